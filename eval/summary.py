"""The dataset-level summary: per split and class, how many rows were generated, kept and dropped, and how well
they score. Written as ``summary.json`` beside the data and printed as a table at the end of a build.

It is computed from the Parquet files alone (the label and score columns; image bytes are never read), so it
works on any dataset in the Hub layout this tool writes, built or standalone-scored. Score statistics are over
every generated row of a class (kept and dropped), so they describe what the generator made; the counts say
what the filters did with it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from builders.store import hub_files

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
DROPPED_SUFFIX = "_dropped"
_SCORES = ["clip_true_prob", "clip_score", "resnet50_match"]


@dataclass(frozen=True)
class ClassSummary:
    split: str
    class_name: str
    generated: int
    kept: int
    dropped: int
    clip_true_prob_mean: float | None
    clip_true_prob_median: float | None
    clip_score_mean: float | None
    resnet50_agreement: float | None  # share of rows whose top-5 holds one of the class's ImageNet names; None if unmapped
    emptied_by_filters: bool  # rows were generated but the filters dropped all of them


@dataclass(frozen=True)
class DatasetSummary:
    classes: list[ClassSummary]
    filters: dict = field(default_factory=dict)

    @property
    def emptied(self) -> list[str]:
        return [f"{c.split}/{c.class_name}" for c in self.classes if c.emptied_by_filters]

    def to_dict(self) -> dict:
        return {"filters": self.filters, "emptied_by_filters": self.emptied, "classes": [asdict(c) for c in self.classes]}

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetSummary":
        return cls(classes=[ClassSummary(**c) for c in data["classes"]], filters=data["filters"])


def summarize(root: str | Path, filters: dict | None = None, splits: list[str] | None = None, label_column: str = "label") -> DatasetSummary:
    """The summary of the dataset at ``root``: kept rows in ``data/``, dropped rows in ``dropped/data/`` or in
    ``data/<split>_dropped-*`` splits. ``filters`` (the active thresholds) is recorded as given; ``splits`` names
    the splits (one the filters emptied has no files) and fixes their order (default: the file names' order)."""
    root = Path(root)
    kept = hub_files(root / "data")
    dropped = hub_files(root / "dropped" / "data")
    known = set(splits or []) | set(kept)
    for name in [s for s in kept if s.endswith(DROPPED_SUFFIX) and s.removesuffix(DROPPED_SUFFIX) in known]:
        dropped[name.removesuffix(DROPPED_SUFFIX)] = kept.pop(name)
    order = [s for s in (splits or []) if s in kept or s in dropped]
    order += [s for s in dict.fromkeys([*kept, *dropped]) if s not in order]
    files = [path for paths in [*kept.values(), *dropped.values()] for path in paths]
    if not files:
        return DatasetSummary(classes=[], filters=filters or {})
    class_names = _class_names(files[0], label_column)
    classes = []
    for split in order:
        rows = _split_rows(kept.get(split, []), dropped.get(split, []), label_column)
        classes += [_class_summary(split, name, rows[label_column] == label, rows) for label, name in enumerate(class_names)]
    return DatasetSummary(classes=classes, filters=filters or {})


def _class_names(path: Path, label_column: str) -> list[str]:
    features = datasets.Features.from_arrow_schema(pq.read_schema(path))
    return features[label_column].names


def _split_rows(kept: list[Path], dropped: list[Path], label_column: str) -> dict[str, np.ndarray]:
    """The label and score columns of a split's kept and dropped files, with a ``kept`` flag per row."""
    tables = []
    for files, is_kept in ((kept, True), (dropped, False)):
        for path in files:
            present = pq.read_schema(path).names
            table = pq.read_table(path, columns=[c for c in [label_column, *_SCORES] if c in present])
            tables.append(table.append_column("kept", pa.repeat(is_kept, table.num_rows)))
    table = pa.concat_tables(tables)
    return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}


def _class_summary(split: str, name: str, mask: np.ndarray, rows: dict[str, np.ndarray]) -> ClassSummary:
    of_class = {column: values[mask] for column, values in rows.items()}
    kept = int(of_class["kept"].sum())
    generated = int(mask.sum())
    matches = [m for m in of_class.get("resnet50_match", []) if m is not None]
    return ClassSummary(
        split=split,
        class_name=name,
        generated=generated,
        kept=kept,
        dropped=generated - kept,
        clip_true_prob_mean=_stat(np.mean, of_class.get("clip_true_prob")),
        clip_true_prob_median=_stat(np.median, of_class.get("clip_true_prob")),
        clip_score_mean=_stat(np.mean, of_class.get("clip_score")),
        resnet50_agreement=_stat(np.mean, np.array(matches, dtype=float)) if matches else None,
        emptied_by_filters=kept == 0 and generated > 0,
    )


def _stat(fn, values: np.ndarray | None) -> float | None:
    return float(fn(values.astype(np.float64))) if values is not None and len(values) else None


def write_summary(root: str | Path, summary: DatasetSummary) -> Path:
    """``summary.json`` at ``root``; every class the filters emptied is also logged as a WARNING."""
    for where in summary.emptied:
        log.warning("filters dropped every image of %s: that class is missing from the split", where)
    path = Path(root) / SUMMARY_FILE
    path.write_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def read_summary(root: str | Path) -> DatasetSummary:
    return DatasetSummary.from_dict(json.loads((Path(root) / SUMMARY_FILE).read_text(encoding="utf-8")))


_HEADER = ("split", "class", "generated", "kept", "dropped", "P(true) mean", "P(true) median", "CLIPScore", "ResNet50 agree")


def format_table(summary: DatasetSummary) -> str:
    """The summary as an aligned text table, with a line for every class the filters emptied."""
    rows = [_HEADER] + [
        (
            c.split,
            c.class_name + (" !" if c.emptied_by_filters else ""),
            str(c.generated),
            str(c.kept),
            str(c.dropped),
            _fmt(c.clip_true_prob_mean, ".3f"),
            _fmt(c.clip_true_prob_median, ".3f"),
            _fmt(c.clip_score_mean, ".2f"),
            _fmt(c.resnet50_agreement, ".0%"),
        )
        for c in summary.classes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    if summary.filters:
        lines.append("filters: " + ", ".join(f"{k}={v}" for k, v in summary.filters.items()))
    lines += [f"! {where}: the filters dropped every image of this class in this split" for where in summary.emptied]
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
