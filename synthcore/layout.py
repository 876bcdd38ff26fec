"""The Hub's Parquet layout: ``data/<split>-NNNNN-of-NNNNN.parquet``, as ``load_dataset`` and the Hub read it.

Every dataset this project writes (a build, a standalone-scored dataset, the rows the filters set aside) uses it,
written with datasets' own ``ParquetWriter`` (features stored in the schema) and sized from the footers alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_ROW_GROUP = 64
HUB_FILE = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")


def hub_file_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def hub_files(data_dir: Path) -> dict[str, list[Path]]:
    """Parquet files per split, in order, from the Hub layout's names ``<split>-NNNNN-of-NNNNN.parquet``."""
    files: dict[str, list[Path]] = {}
    for path in sorted(Path(data_dir).glob("*.parquet")):
        if match := HUB_FILE.match(path.name):
            files.setdefault(match["split"], []).append(path)
    return files


def write_parquet(table: pa.Table, path: Path) -> None:
    """A table of rows as a Parquet file written like a shard: datasets' writer, features in the schema."""
    from datasets.arrow_writer import ParquetWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    features = datasets.Features.from_arrow_schema(table.schema)
    writer = ParquetWriter(features=features, path=str(path), writer_batch_size=ROWS_PER_ROW_GROUP)
    writer.write_table(table)
    writer.finalize()
    writer.close()


def split_sizes(data_dir: Path, splits: list[str]) -> datasets.SplitDict:
    """Rows and bytes of each of ``splits`` that has files in ``data_dir``, in that order, from the Parquet
    footers (no data is read). A split without files (emptied by the filters) is left out."""
    split_dict = datasets.SplitDict()
    files_of = hub_files(data_dir)
    for split in [s for s in splits if s in files_of]:
        metadata = [pq.ParquetFile(f).metadata for f in files_of[split]]
        split_dict.add(
            datasets.SplitInfo(
                name=split,
                num_examples=sum(m.num_rows for m in metadata),
                num_bytes=sum(m.row_group(i).total_byte_size for m in metadata for i in range(m.num_row_groups)),
            )
        )
    return split_dict
