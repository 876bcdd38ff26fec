"""The one report step of a dataset, for a build's export (``builders.export``) and for ``python -m eval``
(``eval.standalone``) alike: the summary, merged with the quality pass's report, written as ``summary.json``; then
the pictures; then the quality pass's outputs (``duplicates.parquet``, the embedding map). The summary and the
pictures share one read of the files (``eval.tallies``). Each caller then writes its own card from what this
returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets

from eval.pictures import write_embedding_map, write_pictures
from eval.quality import QualityReport
from eval.summary import DatasetSummary, summarize, write_summary
from eval.tallies import shared_tallies
from synthcore.columns import LABEL


@dataclass(frozen=True)
class Described:
    """What the report step wrote, for the card: the summary, and the pictures (paths relative to the dataset)."""

    summary: DatasetSummary
    pictures: list[str]


def describe(
    stage: Path,
    features: datasets.Features,
    splits: list[str],
    with_rows: list[str],
    quality: QualityReport | None,
    thresholds: dict | None = None,
    label_column: str = LABEL,
    before_pictures: Callable[[DatasetSummary], None] | None = None,
) -> Described:
    """Summarize, record and draw the dataset at ``stage``. ``splits``: every split in order (one the filters
    emptied included); ``with_rows``: the splits that have files, which the pictures show; ``thresholds``: the
    active filters. ``before_pictures`` runs once ``summary.json`` is written (the build refuses an emptied
    dataset there, publishing the summary alone)."""
    tallies = shared_tallies(features[label_column].num_classes, label_column)
    summary = summarize(stage, thresholds, splits, label_column, tallies=tallies)
    if quality is not None:
        summary = summary.with_quality(quality.per_class, quality.duplicates, quality.cmmd)
    write_summary(stage, summary)
    if before_pictures is not None:
        before_pictures(summary)
    pictures = write_pictures(stage, features, with_rows, thresholds, label_column, tallies)
    if quality is not None:
        pictures += write_quality_outputs(stage, quality, features[label_column].names)
    return Described(summary, pictures)


def write_quality_outputs(root: Path, report: QualityReport, class_names: list[str]) -> list[str]:
    """``duplicates.parquet`` and the embedding picture (after ``write_pictures``, which clears the pictures);
    returns the pictures written, relative to ``root``."""
    report.write_pairs(root)
    if report.projection is None:
        return []
    p = report.projection
    return [write_embedding_map(root, p.points, p.labels, p.splits, class_names, p.explained)]
