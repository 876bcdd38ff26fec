"""Reading an exported dataset back cheaply, for its summary, card and pictures, in memory independent of its size.

A dataset may hold millions of rows and terabytes of image bytes; describing it must not read them all, nor keep a
value per row. Two kinds of read:

- ``tally_files``: the label and score columns only, a few files at a time, reduced at once to per-class counts, sums
  and histograms (``Tally``): means are exact, medians are read from ``HISTOGRAM_BINS`` bins over [0, 1] (the
  median statistics are of probabilities), each middle value taken as its bin's mean: exact where it is alone in
  its bin, within 1/1000 of the exact median always. Memory: O(classes x bins) per split, whatever the rows;
- ``first_rows_by_class``: a few decoded rows of each class, from the files the tally located them in, reading only
  the row groups whose label statistics (in the Parquet footer) may hold a class still wanted.

``Tallies`` reads each list of files once for everyone who asks (the summary, then the pictures).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthcore.columns import LABEL
from synthcore.layout import hub_files
from synthcore.parallel import ordered_map

HISTOGRAM_BINS = 1000  # over [0, 1]: a median read from them is within 1/1000 of the exact one


def split_files(root: Path, split: str) -> list[str]:
    """The exported Parquet files of a split, in order (both layouts of ``synthcore.layout``)."""
    return [str(p) for p in hub_files(Path(root) / "data").get(split, [])]


def stored_features(root: Path, split: str) -> datasets.Features:
    """The features datasets recorded in the schema of a split's first file (no rows are read)."""
    return datasets.Features.from_arrow_schema(pq.read_schema(split_files(root, split)[0]))


@dataclass
class ColumnTally:
    """One numeric or boolean column, per class: how many values are present (not null, not NaN), their sum, and
    (for histogram columns) their counts and sums in ``HISTOGRAM_BINS`` bins over [0, 1], values outside in the end
    bins."""

    count: np.ndarray  # (classes,)
    total: np.ndarray  # (classes,)
    histogram: np.ndarray | None  # (classes, HISTOGRAM_BINS)
    bin_totals: np.ndarray | None  # (classes, HISTOGRAM_BINS): the sum of the values in each bin

    def __add__(self, other: ColumnTally) -> ColumnTally:
        if self.histogram is None:
            return ColumnTally(self.count + other.count, self.total + other.total, None, None)
        return ColumnTally(
            self.count + other.count,
            self.total + other.total,
            self.histogram + other.histogram,
            self.bin_totals + other.bin_totals,
        )


@dataclass
class Tally:
    """Rows per class and the tallies of some columns, over any number of files: memory O(classes x bins)."""

    rows: np.ndarray  # (classes,)
    columns: dict[str, ColumnTally]
    located: dict[int, list[str]] = field(default_factory=dict)  # class -> the files holding its first rows

    @classmethod
    def empty(cls, classes: int, columns: Iterable[str], histograms: Iterable[str] = ()) -> Tally:
        histograms = set(histograms)
        return cls(
            np.zeros(classes, np.int64),
            {
                name: ColumnTally(
                    np.zeros(classes, np.int64),
                    np.zeros(classes),
                    np.zeros((classes, HISTOGRAM_BINS), np.int64) if name in histograms else None,
                    np.zeros((classes, HISTOGRAM_BINS)) if name in histograms else None,
                )
                for name in columns
            },
        )

    def __add__(self, other: Tally) -> Tally:
        """Both tallies' rows and columns (the files located are this one's, then the other's)."""
        located = {label: self.located.get(label, []) + other.located.get(label, []) for label in range(len(self.rows))}
        columns = {name: c + other.columns[name] for name, c in self.columns.items()}
        return Tally(self.rows + other.rows, columns, located)

    def present(self, column: str, label: int) -> int:
        """Values of ``column`` present in class ``label`` (0 when the files lack the column)."""
        return int(self.columns[column].count[label])

    def mean(self, column: str, label: int) -> float | None:
        """Mean of the present values (a boolean's share of true ones); None when there are none."""
        tally = self.columns[column]
        return float(tally.total[label] / tally.count[label]) if tally.count[label] else None

    def median(self, column: str, label: int) -> float | None:
        """Median of the present values, from the histogram: each middle value taken as the mean of its bin's
        values (exact when it is alone in its bin, within 1/``HISTOGRAM_BINS`` always); None when there are none."""
        tally = self.columns[column]
        counts = tally.histogram[label]
        total = int(counts.sum())
        if not total:
            return None
        cumulative = np.cumsum(counts)

        def nth(n: int) -> float:  # the n-th smallest value (from 1): its bin's mean
            bin_index = int(np.searchsorted(cumulative, n))
            return float(tally.bin_totals[label, bin_index] / counts[bin_index])

        return nth((total + 1) // 2) if total % 2 else (nth(total // 2) + nth(total // 2 + 1)) / 2

    def histogram(self, column: str, label: int, bins: int) -> np.ndarray:
        """Counts of class ``label`` in ``bins`` equal bins over [0, 1] (``bins`` divides ``HISTOGRAM_BINS``)."""
        return self.columns[column].histogram[label].reshape(bins, -1).sum(axis=1)


def tally_files(
    files: Iterable[str | Path],
    classes: int,
    columns: Iterable[str],
    histograms: Iterable[str] = (),
    label_column: str = LABEL,
    locate: int = 0,
) -> Tally:
    """The label column and ``columns`` of ``files``, a few files at a time, as a ``Tally`` (``histograms``: the
    columns also binned; ``locate``: note the files that hold the first ``locate`` rows of each class, for
    ``first_rows_by_class``). A column a file lacks counts as absent there."""
    columns = list(dict.fromkeys(columns))
    tally = Tally.empty(classes, columns, histograms)

    def read(path: str | Path) -> tuple[str | Path, pa.Table]:
        file = pq.ParquetFile(path)  # (read_table's dataset machinery costs milliseconds a file)
        present = set(file.schema_arrow.names)
        return path, file.read(columns=[label_column, *[c for c in columns if c in present]], use_threads=False)

    for path, table in ordered_map(read, files):  # read on threads, tallied here in the files' order
        present = set(table.column_names)
        labels = pc.cast(table[label_column], pa.int64()).to_numpy()
        counts = np.bincount(labels, minlength=classes)
        for label in np.flatnonzero((counts > 0) & (tally.rows < locate)):
            tally.located.setdefault(int(label), []).append(str(path))
        tally.rows += counts
        for name in [c for c in columns if c in present]:
            _add_column(tally.columns[name], labels, table[name], classes)
    return tally


class Tallies:
    """Tallies of lists of files, each list read once however often it is asked for (a dataset's summary and its
    pictures read the same files), with the same columns, histograms and located rows."""

    def __init__(self, classes: int, columns: Iterable[str], histograms: Iterable[str], label_column: str, locate: int):
        self.classes, self.columns, self.histograms = classes, list(columns), list(histograms)
        self.label_column, self.locate = label_column, locate
        self._done: dict[tuple[str, ...], Tally] = {}

    def of(self, files: Iterable[str | Path]) -> Tally:
        key = tuple(map(str, files))
        if key not in self._done:
            self._done[key] = tally_files(
                key, self.classes, self.columns, self.histograms, self.label_column, self.locate
            )
        return self._done[key]


def _add_column(tally: ColumnTally, labels: np.ndarray, column: pa.ChunkedArray, classes: int) -> None:
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN
    present = ~np.isnan(values)
    labels, values = labels[present], values[present]
    tally.count += np.bincount(labels, minlength=classes)
    tally.total += np.bincount(labels, weights=values, minlength=classes)
    if tally.histogram is not None and len(labels):
        # only the span of classes in this file (a shard holds one): at 1,000 classes the whole (classes x bins)
        # table per file cost ~1.7 ms a column, 15 s of a 3,000-file export
        low, high = int(labels.min()), int(labels.max()) + 1
        bins = np.clip((values * HISTOGRAM_BINS).astype(np.int64), 0, HISTOGRAM_BINS - 1)
        cells = (labels - low) * HISTOGRAM_BINS + bins
        span = (high - low) * HISTOGRAM_BINS
        tally.histogram[low:high] += np.bincount(cells, minlength=span).reshape(high - low, HISTOGRAM_BINS)
        sums = np.bincount(cells, weights=values, minlength=span)
        tally.bin_totals[low:high] += sums.reshape(high - low, HISTOGRAM_BINS)


def first_rows_by_class(
    tally: Tally,
    features: datasets.Features,
    count: int,
    label_column: str = LABEL,
    columns: Iterable[str] | None = None,
) -> dict[int, list[dict]]:
    """The first ``count`` rows of every class in the files ``tally`` located them in (``tally_files(...,
    locate=count)``), decoded (only ``columns``, where given, and the label): only the row groups whose label
    range (footer statistics) holds the class are read. Classes are read on threads (``ordered_map``)."""
    wanted = None if columns is None else list(dict.fromkeys([label_column, *columns]))

    def rows_of(located: tuple[int, list[str]]) -> list[dict]:
        return _first_rows(located[1], located[0], features, count, label_column, wanted)

    return dict(zip(tally.located, ordered_map(rows_of, tally.located.items())))


def _first_rows(
    paths: list[str], label: int, features: datasets.Features, count: int, label_column: str, columns: list[str] | None
) -> list:
    found: list[dict] = []
    for path in paths:
        file = pq.ParquetFile(path)
        leaves = [file.schema.column(i).path for i in range(len(file.schema))]  # an image column is two leaves
        position = leaves.index(label_column)
        names = file.schema_arrow.names if columns is not None else []
        present = None if columns is None else [c for c in columns if c in names]
        for group in range(file.metadata.num_row_groups):
            if len(found) == count:
                return found
            stats = file.metadata.row_group(group).column(position).statistics
            if stats is not None and stats.has_min_max and not stats.min <= label <= stats.max:
                continue
            table = file.read_row_group(group, columns=present, use_threads=False)
            rows = table.filter(pc.equal(table[label_column], label)).slice(0, count - len(found)).to_pylist()
            found += [features.decode_example(row) for row in rows]
    return found
