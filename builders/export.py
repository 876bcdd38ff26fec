"""Export: finished shards become the dataset's files in the Hub layout, described by a card and build info.

Runs on the main process once every shard exists. First every shard is verified byte for byte against the
SHA-256 recorded when it was made (``DamagedShards`` when one fails: it is set aside to be made again, and nothing
is exported). The new export is then written beside the old one, in a staging directory, and published at the end
(``synthcore.outdir``): a failed export leaves the previous one as it was. Without filters, shards are copied into
``data/`` (copy-on-write clones where the file system can; never hard links). With filters, each shard's rows are
split by the score columns: kept rows go to ``data/``, dropped rows to ``dropped/data/`` (a dataset of its own, with
its own card) or to ``<split>_dropped`` splits; a shard that is wholly kept or wholly dropped is still just copied.
Then it writes ``README.md`` (whose YAML ``configs`` and ``dataset_info`` let ``load_dataset(DIR)`` return every
split with its features and class names in a process that imports nothing of ours), ``recipe.yaml``,
``build_info.json`` and ``summary.json``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from builders.card import BUILD_INFO, card_data, write_card
from builders.expansion import lock_text
from builders.guided import log_guidance_warnings, reference_report
from builders.hub import RECIPE_FILE
from builders.plan import Plan, Shard
from builders.recipe import FilterSettings, Recipe
from builders.refilter import attempts_by_class
from builders.store import Store
from builders.store.local import DamagedShards
from builders.store.prompt_lock import PROMPT_LOCK
from eval.filters import keep_mask
from eval.pictures import PICTURES_DIR
from eval.quality import PAIRS_FILE, QualityReport, quality_pass
from eval.report import describe
from eval.summary import SUMMARY_FILE, DatasetSummary
from synthcore.cardmeta import CARD, md, save_card
from synthcore.columns import DROPPED_SUFFIX
from synthcore.layout import MAX_FILES_PER_FOLDER, DataLayout, split_sizes, write_parquet
from synthcore.outdir import OwnedDir, Tool, copy_file

DATA, DROPPED = "data", "dropped"
BUILD_OUTPUT = Tool(
    "build.py", (CARD, RECIPE_FILE, PROMPT_LOCK, BUILD_INFO, SUMMARY_FILE, PAIRS_FILE, PICTURES_DIR, DATA, DROPPED)
)


class EmptyDataset(RuntimeError):
    """The filters (or the safety checker) left no row in any split: there is no dataset to describe."""


@dataclass(frozen=True)
class ExportResult:
    """What the export computed, handed on to the command line's table and report (never re-read from files)."""

    rows: dict[str, int]  # rows per split of data/
    summary: DatasetSummary
    build_info: dict


def export_dataset(
    recipe: Recipe,
    features: datasets.Features,
    provenance: dict,
    store: Store,
    owned: OwnedDir,
    plan: Plan,
    max_files: int = MAX_FILES_PER_FOLDER,
) -> ExportResult:
    """Lay out ``data/`` (and ``dropped/``) from the verified shards of ``plan`` and describe it: ``recipe.yaml``,
    ``build_info.json`` (``provenance`` plus rows and safety drops), ``summary.json``, the quality outputs, pictures
    and the card; all written into a staging directory of ``owned`` and published at the end. ``max_files``: files
    of ``data/`` above which it is chunked (``synthcore.layout``; lowered by tests)."""
    if damaged := store.verify(list(plan.shards)):
        raise DamagedShards(damaged)
    with owned.staging() as stage:
        # A shard the safety checker emptied has no rows to export (an empty Parquet file breaks load_dataset).
        with_rows = Plan(tuple(shard for shard in plan.shards if store.num_rows(shard)))
        quality = _assess_quality(recipe, store, with_rows)
        if recipe.filters.active:
            duplicates = quality.drop_array() if quality else None
            _export_filtered(store, stage, with_rows, recipe.filters, duplicates, max_files)
        else:
            names = store.export_names(with_rows, max_files)
            for shard in tqdm(with_rows.shards, desc="exporting", unit="shard", disable=len(with_rows.shards) < 50):
                _copy(store, shard, stage / DATA / names[shard.key])
        splits = [name for split in plan.splits for name in (split, f"{split}{DROPPED_SUFFIX}")]
        sizes = split_sizes(stage / DATA, splits)
        rows = {name: info.num_examples for name, info in sizes.items()}
        (stage / RECIPE_FILE).write_text(provenance["recipe_yaml"], encoding="utf-8")
        if recipe.prompt_expansion:  # published with every export, as recipe.yaml is
            (stage / PROMPT_LOCK).write_text(lock_text(recipe), encoding="utf-8")
        safety_dropped = [job_id for shard in plan.shards for job_id in store.safety_dropped(shard)]
        build_info = {**provenance, "rows": rows, "safety_dropped": safety_dropped}
        paths = [(shard.class_name, store.shard_path(shard)) for shard in with_rows.shards]
        if recipe.filters.regenerating:  # rows by the tries they took, per class
            build_info["filter_regenerations"] = attempts_by_class(paths)
        if recipe.guided:  # the reference sets, and how close the images stayed to them, per class
            build_info["reference_images"] = reference_report(recipe, paths)
            log_guidance_warnings(build_info["reference_images"])
        (stage / BUILD_INFO).write_text(json.dumps(build_info, indent=2, ensure_ascii=False), encoding="utf-8")
        refuse_if_empty = functools.partial(_dropped_and_empty, stage, owned, store, recipe, features, plan, build_info)
        thresholds = recipe.filters.thresholds()
        described = describe(
            stage, features, plan.splits, list(rows), quality, thresholds, before_pictures=refuse_if_empty
        )
        write_card(
            stage, recipe.without_hub(), features, sizes, described.summary, build_info
        )  # names a repo once pushed
        owned.publish(stage)
    return ExportResult(rows=rows, summary=described.summary, build_info=build_info)


def _dropped_and_empty(
    stage: Path,
    owned: OwnedDir,
    store: Store,
    recipe: Recipe,
    features: datasets.Features,
    plan: Plan,
    build_info: dict,
    summary: DatasetSummary,
) -> None:
    """Between the summary and the pictures: the card of ``dropped/``, and the refusal of a dataset the filters
    (or the safety checker) emptied, publishing only what was dropped and why (``summary.json``)."""
    if (stage / DROPPED).exists():
        _write_dropped_card(stage / DROPPED, recipe, features, plan.splits)
    if not any(split in build_info["rows"] for split in plan.splits):
        owned.publish(stage, names=[SUMMARY_FILE, DROPPED])  # what was dropped, and why; data/ stays as it was
        raise EmptyDataset(
            f"{owned.root}: no image is left in any split (filters: {recipe.filters.thresholds() or 'none'}; "
            f"{len(build_info['safety_dropped'])} dropped by the safety checker). Nothing was lost: the rows are in "
            f"{owned.root / DROPPED if (owned.root / DROPPED).exists() else store.shards}; loosen the filters "
            "and run the same command again (nothing is regenerated). summary.json says what was dropped."
        )


def _copy(store: Store, shard: Shard, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    copy_file(store.shard_path(shard), target)


def _assess_quality(recipe: Recipe, store: Store, plan: Plan) -> QualityReport | None:
    """The quality pass (``eval.quality``) over the finished shards in plan order: duplicates, leakage,
    diversity, CMMD to ``quality.reference``, and the repeats ``filters.drop_duplicates`` drops."""
    if not recipe.quality.enabled or not plan.shards:
        return None
    parts = [(shard.split, store.shard_path(shard)) for shard in plan.shards]
    clip = recipe.scoring.clip
    return quality_pass(parts, recipe.quality, clip.model if clip.enabled else None, recipe.model.dtype, recipe.filters)


def _export_filtered(
    store: Store, stage: Path, plan: Plan, filters: FilterSettings, duplicates: pa.Array | None, max_files: int
) -> None:
    """Every shard's kept rows into ``data/`` and its dropped rows aside, numbered among the non-empty parts.

    Empty parts are not written (a Parquet file without rows breaks ``load_dataset``); a split whose rows were
    all dropped has no files, and so no entry in the card. ``eval.summary`` reports it. ``duplicates``: ids
    of the rows ``filters.drop_duplicates`` drops.
    """
    masks = {
        shard.key: keep_mask(pq.read_table(store.shard_path(shard), columns=filters.columns()), filters, duplicates)
        for shard in plan.shards
    }
    kept = {split: [s for s in plan.shards_of(split) if pc.any(masks[s.key]).as_py()] for split in plan.splits}
    dropped = {split: [s for s in plan.shards_of(split) if not pc.all(masks[s.key]).as_py()] for split in plan.splits}
    beside = filters.dropped == "split"  # dropped rows as <split>_dropped splits of data/, else in dropped/data/
    aside = {split: f"{split}{DROPPED_SUFFIX}" if beside else split for split in plan.splits}
    data_counts = {split: len(shards) for split, shards in kept.items()}
    data_counts |= {aside[split]: len(shards) for split, shards in dropped.items()} if beside else {}
    data = DataLayout(data_counts, max_files)
    elsewhere = DataLayout({split: len(shards) for split, shards in dropped.items()}, max_files)
    dropped_root, dropped_layout = (stage / DATA, data) if beside else (stage / DROPPED / DATA, elsewhere)
    for split in plan.splits:
        targets: dict[str, dict[bool, Path]] = {s.key: {} for s in plan.shards_of(split)}
        for i, shard in enumerate(kept[split]):
            targets[shard.key][True] = stage / DATA / data.path(split, i)
        for i, shard in enumerate(dropped[split]):
            targets[shard.key][False] = dropped_root / dropped_layout.path(aside[split], i)
        shards = plan.shards_of(split)
        for shard in tqdm(shards, desc=f"exporting {split}", unit="shard", disable=len(shards) < 50):
            _write_parts(store, shard, masks[shard.key], targets[shard.key])


def _write_parts(store: Store, shard: Shard, mask: pa.ChunkedArray, targets: dict[bool, Path]) -> None:
    """The kept (True) and dropped (False) rows of a shard to their targets: a copy when one part is all of it."""
    if len(targets) == 1:
        _copy(store, shard, next(iter(targets.values())))
        return
    table = pq.read_table(store.shard_path(shard))
    write_parquet(table.filter(mask), targets[True])
    write_parquet(table.filter(pc.invert(mask)), targets[False])


def _write_dropped_card(root: Path, recipe: Recipe, features: datasets.Features, splits: list[str]) -> None:
    sizes = split_sizes(root / DATA, splits)
    rules = ", ".join(f"`{key}: {value}`" for key, value in recipe.filters.thresholds().items())
    body = (
        f"# {md(recipe.name)}: rows dropped by the filters\n\n"
        f"Images of `{recipe.name}` that failed the recipe's filters ({rules}). They are kept here, never deleted: "
        "the same columns as the dataset in the parent directory, readable with `load_dataset` on this directory.\n"
    )
    save_card(root, card_data(recipe, features, sizes), body)
