"""The dataset-level summary: per split and class, how many rows were generated, kept and dropped, and how well
they score. Written as ``summary.json`` beside the data and printed as a table at the end of a build.

It is computed from the Parquet files alone (the label and score columns; image bytes are never read), one file at a
time into per-class counts, sums and histograms (``synthcore.readback.tally_files``: memory independent of the rows;
medians within 1/1000), so it works on any dataset in the Hub layout this tool writes, built or standalone-scored.
Score statistics are over every generated row of a class (kept and dropped), so they describe what the generator
made; the counts say what the filters did with it.
"""

from __future__ import annotations

import json
import logging
import math
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from eval.scorers.base import SummaryStat
from eval.tallies import DROPPED_DIR, MEDIAN_COLUMNS, STAT_COLUMNS, STATS
from synthcore.cardmeta import md
from synthcore.columns import DROPPED_SUFFIX, LABEL
from synthcore.layout import hub_files
from synthcore.readback import Tallies, Tally

log = logging.getLogger("synthdata.eval")

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class ClassSummary:
    split: str
    class_name: str
    generated: int
    kept: int
    dropped: int
    emptied_by_filters: bool  # rows were generated but the filters dropped all of them
    scores: dict[str, float | None] = field(default_factory=dict)  # every registered SummaryStat's key; None: no data
    # eval.quality (None where the pass did not run or had no embeddings):
    duplicates: dict | None = None  # rows of this split and class repeating an earlier row, by kind and scope
    diversity: dict | None = None  # images, mean_cosine_distance, vendi
    cmmd: float | None = None  # to the reference's images of this class


@dataclass(frozen=True)
class DatasetSummary:
    classes: list[ClassSummary]
    filters: dict = field(default_factory=dict)
    duplicates: dict | None = None  # eval.quality: the whole dataset's counts (summed over the classes)
    cmmd: dict | None = None  # eval.quality: reference, overall, per_split (or error)

    @property
    def emptied(self) -> list[str]:
        return [f"{c.split}/{c.class_name}" for c in self.classes if c.emptied_by_filters]

    @property
    def leaked(self) -> dict[str, int]:
        """Rows repeating a row of an earlier split (exact, near), 0 when not measured."""
        counts = self.duplicates or {}
        return {kind: ((counts.get(kind) or {}).get("across_splits") or 0) for kind in ("exact", "near")}

    def to_dict(self) -> dict:
        return {
            "filters": self.filters,
            "emptied_by_filters": self.emptied,
            "duplicates": self.duplicates,
            "cmmd": self.cmmd,
            "classes": [asdict(c) for c in self.classes],
        }

    @classmethod
    def from_dict(cls, data: dict) -> DatasetSummary:
        return cls(
            classes=[ClassSummary(**c) for c in data["classes"]],
            filters=data["filters"],
            duplicates=data.get("duplicates"),
            cmmd=data.get("cmmd"),
        )

    def with_quality(
        self, per_class: dict[tuple[str, str], dict], duplicates: dict, cmmd: dict | None
    ) -> DatasetSummary:
        """This summary with the quality pass's sections added (``eval.quality.QualityReport``'s: per split and
        class, and overall)."""
        classes = [replace(c, **per_class.get((c.split, c.class_name), {})) for c in self.classes]
        return replace(self, classes=classes, duplicates=duplicates, cmmd=cmmd)


def summarize(
    root: str | Path,
    filters: dict | None = None,
    splits: list[str] | None = None,
    label_column: str = LABEL,
    tallies: Tallies | None = None,
) -> DatasetSummary:
    """The summary of the dataset at ``root``: kept rows in ``data/``, dropped rows in ``dropped/data/`` or in
    ``data/<split>_dropped-*`` splits. ``filters`` (the active thresholds) is recorded as given; ``splits`` names
    the splits (one the filters emptied has no files) and fixes their order (default: the file names' order).
    ``tallies``: shared with the pictures (``eval.tallies.shared_tallies``), so the files are read once."""
    root = Path(root)
    kept = hub_files(root / "data")
    dropped = hub_files(root / DROPPED_DIR / "data")
    known = set(splits or []) | set(kept)
    for name in [s for s in kept if s.endswith(DROPPED_SUFFIX) and s.removesuffix(DROPPED_SUFFIX) in known]:
        dropped[name.removesuffix(DROPPED_SUFFIX)] = kept.pop(name)
    order = [s for s in (splits or []) if s in kept or s in dropped]
    order += [s for s in dict.fromkeys([*kept, *dropped]) if s not in order]
    files = [path for paths in [*kept.values(), *dropped.values()] for path in paths]
    if not files:
        return DatasetSummary(classes=[], filters=filters or {})
    class_names = _class_names(files[0], label_column)
    tallies = tallies or Tallies(len(class_names), STAT_COLUMNS, MEDIAN_COLUMNS, label_column, locate=0)
    classes = []
    for split in order:  # one file at a time: memory does not grow with the rows
        kept_rows = tallies.of(kept.get(split, []))
        every_row = kept_rows + tallies.of(dropped.get(split, []))
        classes += [_class_summary(split, name, label, kept_rows, every_row) for label, name in enumerate(class_names)]
    return DatasetSummary(classes=classes, filters=filters or {})


def _class_names(path: Path, label_column: str) -> list[str]:
    features = datasets.Features.from_arrow_schema(pq.read_schema(path))
    return features[label_column].names


def _class_summary(split: str, name: str, label: int, kept_rows: Tally, every_row: Tally) -> ClassSummary:
    kept, generated = int(kept_rows.rows[label]), int(every_row.rows[label])
    return ClassSummary(
        split=split,
        class_name=name,
        generated=generated,
        kept=kept,
        dropped=generated - kept,
        emptied_by_filters=kept == 0 and generated > 0,
        scores={stat.key: _stat(stat, every_row, label) for stat in STATS},
    )


def _stat(stat: SummaryStat, tally: Tally, label: int) -> float | None:
    """The statistic over the present values of the class (None when there are none, or the column is absent):
    means and shares exact, medians within 1/1000 (``synthcore.readback``)."""
    return tally.median(stat.column, label) if stat.reduce == "median" else tally.mean(stat.column, label)


def write_summary(root: str | Path, summary: DatasetSummary) -> Path:
    """``summary.json`` at ``root``; every class the filters emptied, and leakage between splits, is also logged
    as a WARNING."""
    for where in summary.emptied:
        log.warning("filters dropped every image of %s: that class is missing from the split", where)
    if warning := leakage_warning(summary):
        log.warning(warning)
    path = Path(root) / SUMMARY_FILE
    text = json.dumps(_finite(summary.to_dict()), indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text, encoding="utf-8")
    return path


def _finite(value):
    """The value with every non-finite number as None: strict JSON has no NaN or infinity (null: no usable data)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def read_summary(root: str | Path) -> DatasetSummary:
    return DatasetSummary.from_dict(json.loads((Path(root) / SUMMARY_FILE).read_text(encoding="utf-8")))


_HEADER = ("split", "class", "generated", "kept", "dropped", *(stat.header for stat in STATS))


def format_table(summary: DatasetSummary, rows_word: str = "generated") -> str:
    """The summary as an aligned text table, with a line for every class the filters emptied. ``rows_word``
    heads the row-count column ("generated" for a build, "rows" for a dataset scored as it is)."""
    rows = [(*_HEADER[:2], rows_word, *_HEADER[3:])] + [
        (
            c.split,
            c.class_name + (" !" if c.emptied_by_filters else ""),
            str(c.generated),
            str(c.kept),
            str(c.dropped),
            *(format_stat(stat, c.scores.get(stat.key)) for stat in STATS),
        )
        for c in summary.classes
    ]
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = [
        "  ".join(pad(cell, w, left=i < 2) for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows
    ]
    if summary.filters:
        lines.append("filters: " + ", ".join(f"{k}={v}" for k, v in summary.filters.items()))
    lines += [f"! {where}: the filters dropped every image of this class in this split" for where in summary.emptied]
    return "\n".join(lines + quality_lines(summary))


def format_stat(stat: SummaryStat, value: float | None) -> str:
    return "-" if value is None else format(value, stat.fmt)


def display_width(text: str) -> int:
    """Columns a terminal gives ``text``: wide (East Asian) characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def pad(text: str, width: int, left: bool) -> str:
    fill = " " * (width - display_width(text))
    return text + fill if left else fill + text


# -- the quality pass's part (eval.quality) -----------------------------------------------------------------------
QUALITY_HEADER = ("split", "class", "images", "exact dup", "near dup", "leaked", "cos dist", "Vendi")


def quality_table(summary: DatasetSummary) -> list[tuple[str, ...]]:
    """Header and one row per split and class: rows repeating an earlier row of their split (exact, near),
    rows repeating a row of an earlier split (leaked), mean pairwise cosine distance, Vendi score, and CMMD to
    the reference when there is one. Empty when the quality pass did not run."""
    if summary.duplicates is None:
        return []
    with_cmmd = summary.cmmd is not None and "overall" in summary.cmmd
    rows = [QUALITY_HEADER + (("CMMD",) if with_cmmd else ())]
    for c in summary.classes:
        duplicates, diversity = c.duplicates or {}, c.diversity or {}
        near = duplicates.get("near")
        leaked = [(duplicates.get(kind) or {}).get("across_splits") for kind in ("exact", "near")]
        row = (
            c.split,
            c.class_name,
            str(diversity.get("images", c.generated)),
            _count((duplicates.get("exact") or {}).get("within_split")),
            _count(near.get("within_split") if near else None),
            _count(sum(n for n in leaked if n is not None) if leaked[0] is not None else None),
            _number(diversity.get("mean_cosine_distance"), ".3f"),
            _number(diversity.get("vendi"), ".1f"),
        )
        rows.append(row + ((_number(c.cmmd, ".3f"),) if with_cmmd else ()))
    return rows


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def quality_notes(summary: DatasetSummary) -> list[str]:
    """The sentences under the quality table: duplicate totals, CMMD, what was not searched."""
    d = summary.duplicates
    if d is None:
        return []
    near = d.get("near")
    notes = [
        f"duplicates: {d['exact']['within_split']} exact"
        + (f" and {near['within_split']} near (cosine ≥ {d['threshold']:g})" if near else "")
        + " repeat an earlier image of their split and class"
        + ("" if near else " (near-duplicates not searched: no clip_embedding column)")
    ]
    if (search := d.get("near_search") or {}).get("method", "exact") != "exact":
        recall = "-" if search["recall"] is None else f"{search['recall']:.3f}"
        nearest = "-" if search["nearest_recall"] is None else f"{search['nearest_recall']:.3f}"
        names = list(search["classes"])
        notes.append(
            f"near-duplicates of {names if len(names) <= 10 else f'{len(names)} classes'} (over "
            "quality.exact_search_limit) searched approximately "
            f"(faiss IVF index): recall {recall}, the share of the {search['queries']} sampled searches with a "
            f"near-duplicate whose duplicate it found (nearest earlier image found at any similarity: {nearest} "
            f"of {search['sampled']})"
        )
    if summary.cmmd and "overall" in summary.cmmd:
        per_split = ", ".join(f"{s} {v:.3f}" for s, v in summary.cmmd["per_split"].items())
        notes.append(
            f"CMMD to {summary.cmmd['reference']} ({summary.cmmd['reference_images']} images): "
            f"{summary.cmmd['overall']:.3f} overall; {per_split}"
        )
    elif summary.cmmd and "error" in summary.cmmd:
        notes.append(f"CMMD not measured: {summary.cmmd['error']}")
    return notes


def leakage_warning(summary: DatasetSummary) -> str | None:
    """The loud line for rows of a later split that repeat rows of an earlier one (None when there are none)."""
    leaked = summary.leaked
    if not sum(leaked.values()):
        return None
    return (
        f"LEAKAGE: {sum(leaked.values())} images repeat an image of the same class in an earlier split "
        f"({leaked['exact']} exact, {leaked['near']} near): a test split that repeats train images measures "
        "memory, not generalisation. The pairs are in duplicates.parquet; filters.drop_duplicates removes them"
    )


def quality_lines(summary: DatasetSummary) -> list[str]:
    """The quality table as aligned text, its notes and the leakage warning (nothing without the pass)."""
    rows = quality_table(summary)
    if not rows:
        return []
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["", "quality:"] + [
        "  ".join(pad(cell, w, left=i < 2) for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows
    ]
    lines += quality_notes(summary)
    if warning := leakage_warning(summary):
        lines.append(f"!! {warning}")
    return lines


def quality_markdown(summary: DatasetSummary, picture: str | None) -> str:
    """The quality pass's section of a dataset card (Markdown; empty without the pass): the table, its notes,
    the embedding picture, and what the numbers mean."""
    rows = quality_table(summary)
    if not rows:
        return ""
    cells = [[md(cell) for cell in row] for row in rows]
    table = ["| " + " | ".join(cells[0]) + " |", "|---|---|" + "---:|" * (len(cells[0]) - 2)]
    table += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    notes = [f"- {md(note)}" for note in quality_notes(summary)]
    image = (
        f"\n\n![CLIP image embeddings projected on two principal components, coloured by class, marked by split]"
        f"({picture})"
        if picture
        else ""
    )
    return (
        "\n".join(table + [""] + notes)
        + image
        + "\n\n*exact dup*: images whose decoded pixels repeat an earlier image of their split and class; *near dup*: "
        "images whose CLIP embedding has a cosine similarity of at least the threshold with an earlier one's (exact "
        "ones not counted); "
        "*leaked*: images repeating (exactly or nearly) an image of the same class in an earlier split; every pair "
        "is in `duplicates.parquet`. *cos dist*: mean pairwise cosine distance of the CLIP embeddings (higher is "
        "more varied); *Vendi*: the effective number of distinct images (1 when all are alike, at most the count)"
        + (
            "; *CMMD*: distance to the reference's real images of the class (0 = the same distribution)"
            if summary.cmmd
            else ""
        )
        + ". Counted over every generated image, kept or dropped."
    )
