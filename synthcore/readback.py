"""Reading an exported dataset back cheaply, for its card and pictures.

A dataset may hold gigabytes of image bytes; describing it must not read them all. These helpers stream the
Parquet files of one split with datasets' own Parquet reader, asking only for the columns needed (counts and
scores) or, for a few sample images, filtering on the label so whole files and row groups of other classes are
skipped by their statistics. Nothing is copied into a cache.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.parquet as pq

from synthcore.columns import LABEL
from synthcore.layout import hub_files


def split_files(root: Path, split: str) -> list[str]:
    """The exported Parquet files of a split, in order (``data/<split>-NNNNN-of-NNNNN.parquet``)."""
    return [str(p) for p in hub_files(Path(root) / "data").get(split, [])]


def stored_features(root: Path, split: str) -> datasets.Features:
    """The features datasets recorded in the schema of a split's first file (no rows are read)."""
    return datasets.Features.from_arrow_schema(pq.read_schema(split_files(root, split)[0]))


def _stream(root: Path, split: str, features: datasets.Features, **parquet_options) -> datasets.IterableDataset:
    return datasets.load_dataset(
        "parquet",
        data_files={split: split_files(root, split)},
        split=split,
        streaming=True,
        features=features,
        **parquet_options,
    )


def read_columns(root: Path, split: str, features: datasets.Features, columns: list[str]) -> dict[str, list]:
    """Whole columns of a split (never the image column): only these columns are read from the files."""
    wanted = datasets.Features({name: features[name] for name in columns})
    values: dict[str, list] = {name: [] for name in columns}
    for batch in _stream(root, split, wanted, columns=columns).iter(batch_size=1024):
        for name in columns:
            values[name] += batch[name]
    return values


def first_rows_of_class(
    root: Path, split: str, features: datasets.Features, label: int, count: int, label_column: str = LABEL
) -> list[dict]:
    """The first ``count`` rows of one class in a split, images decoded, reading little beyond them."""
    return list(_stream(root, split, features, filters=[(label_column, "==", label)]).take(count))
