"""Export: finished shards become the dataset's files in the Hub layout, described by a card and build info.

Runs on the main process once every shard exists. It links shards into ``data/`` (no image bytes copied),
then writes ``README.md`` (whose YAML ``configs`` and ``dataset_info`` let ``load_dataset(DIR)`` return every split
with its features and class names in a process that imports nothing of ours), ``recipe.yaml`` and
``build_info.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from builders.card import write_card
from builders.pictures import write_pictures
from builders.plan import Plan
from builders.recipe import recipe_to_yaml
from builders.store import OutputDir


def export_dataset(builder, store: OutputDir, plan: Plan) -> dict[str, int]:
    """Lay out ``data/`` from the shards and describe it; returns the number of rows per split."""
    names = store.export_names(plan)
    store.clear_export()
    rows: dict[str, int] = {}
    for shard in plan.shards:
        path = store.export(shard, names[shard.key])
        rows[shard.split] = rows.get(shard.split, 0) + pq.ParquetFile(path).metadata.num_rows
    info = builder.provenance()
    (store.root / "recipe.yaml").write_text(info["recipe_yaml"], encoding="utf-8")
    (store.root / "build_info.json").write_text(json.dumps({**info, "rows": rows}, indent=2, ensure_ascii=False), encoding="utf-8")
    write_pictures(store.root, builder.info.features, list(rows))
    write_card(store.root, builder.recipe, builder.info.features, split_sizes=split_sizes(store.data, list(rows)))
    return rows


def split_sizes(data_dir: Path, splits: list[str]) -> datasets.SplitDict:
    """Rows and bytes per split, read from the Parquet footers (no data is read)."""
    split_dict = datasets.SplitDict()
    for split in splits:
        files = sorted(data_dir.glob(f"{split}-*.parquet"))
        metadata = [pq.ParquetFile(f).metadata for f in files]
        split_dict.add(
            datasets.SplitInfo(
                name=split,
                num_examples=sum(m.num_rows for m in metadata),
                num_bytes=sum(m.row_group(i).total_byte_size for m in metadata for i in range(m.num_row_groups)),
            )
        )
    return split_dict
