"""The one read of a dataset's files that its summary and its pictures share: which files hold each split's kept
and dropped rows, and the columns tallied from them (every summary statistic's column, CLIP's true-class
probability binned, and the files of each class's first sample rows located; ``synthcore.readback``).

``eval.report`` makes one ``shared_tallies`` per dataset and hands it to ``eval.summary`` and ``eval.pictures``,
so a build's export and ``python -m eval`` read each file once for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets

from eval.scorers import SCORERS
from eval.scorers.base import SummaryStat
from eval.scorers.clip import TRUE_PROB
from synthcore.columns import DROPPED_SUFFIX, LABEL
from synthcore.layout import hub_files
from synthcore.readback import Tallies

DROPPED_DIR = "dropped"  # the filters' dropped rows as a dataset of their own (``filters.dropped: dataset``)
SAMPLES_PER_SPLIT = 6  # sample images per split and class in the pictures
STATS: tuple[SummaryStat, ...] = tuple(stat for scorer in SCORERS.values() for stat in scorer.summary)
STAT_COLUMNS = list(dict.fromkeys(stat.column for stat in STATS))
MEDIAN_COLUMNS = [stat.column for stat in STATS if stat.reduce == "median"]  # binned, for their medians


def shared_tallies(classes: int, label_column: str = LABEL) -> Tallies:
    """One reading of a dataset's files for its summary and its pictures both: every summary statistic's column,
    CLIP's true-class probability binned, and the files of each class's first sample rows located."""
    return Tallies(
        classes, [*STAT_COLUMNS, TRUE_PROB], [*MEDIAN_COLUMNS, TRUE_PROB], label_column, locate=SAMPLES_PER_SPLIT
    )


@dataclass(frozen=True)
class SplitRows:
    """Where a split's rows are, as (dataset root, split name) for ``synthcore.readback``: the kept ones in
    ``data/``; the ones the filters dropped in a ``<split>_dropped`` split or in ``dropped/``. Either may be
    absent (a split the filters emptied has no kept files)."""

    name: str
    kept: tuple[Path, str] | None
    dropped: tuple[Path, str] | None


def split_rows(root: Path, splits: list[str]) -> list[SplitRows]:
    """Every split of ``splits`` (``<split>_dropped`` ones folded into their split) and every split that has
    only dropped rows, in that order."""
    kept_files, dropped_files = hub_files(root / "data"), hub_files(root / DROPPED_DIR / "data")
    names = [s for s in splits if not s.endswith(DROPPED_SUFFIX) or s.removesuffix(DROPPED_SUFFIX) not in splits]
    names += [s.removesuffix(DROPPED_SUFFIX) for s in kept_files if s.endswith(DROPPED_SUFFIX)] + list(dropped_files)
    rows = []
    for name in dict.fromkeys(names):
        if f"{name}{DROPPED_SUFFIX}" in kept_files:
            dropped = (root, f"{name}{DROPPED_SUFFIX}")
        else:
            dropped = (root / DROPPED_DIR, name) if name in dropped_files else None
        rows.append(SplitRows(name, (root, name) if name in kept_files else None, dropped))
    return rows


def image_column(features: datasets.Features) -> str:
    return next(column for column, feature in features.items() if isinstance(feature, datasets.Image))
