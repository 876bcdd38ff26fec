"""Pictures to look at before using a dataset: sample images per class, and how sure CLIP is of each class.

Written as PNG under ``<out>/pictures/`` (shown in the card by relative links, uploaded with the data):

- ``samples-class-NNN.png``: per class (``NNN`` its label index, never its raw name), one row per split with
  its first images, each captioned with CLIP's probability of the true class when the dataset has that column; a
  split where the class has no image says why (the filters dropped all N of them, or there were none);
- ``clip-true-prob.png``: per class, a histogram of that probability in every split, kept rows and the rows the
  filters dropped apart (read from ``dropped/data`` or the ``<split>_dropped`` splits), with the filter's
  threshold (only with the column).

Only the few sample images are read (their row groups alone); the histogram reads the label and score columns
alone, tallied file by file (see ``synthcore.readback``): memory does not grow with the rows. Figures have a fixed
size in pixels (``*_size`` functions), whatever the data. Class names are drawn in their own script
(``synthcore.fonts``: CJK included).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import matplotlib
import numpy as np
import PIL.Image
import PIL.ImageOps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.summary import MEDIAN_COLUMNS, STAT_COLUMNS
from synthcore.columns import DROPPED_SUFFIX, LABEL
from synthcore.fonts import picture_style, shown
from synthcore.layout import hub_files
from synthcore.readback import Tallies, Tally, first_rows_by_class, split_files

PICTURES_DIR = "pictures"
DROPPED_DIR = "dropped"  # the filters' dropped rows as a dataset of their own (``filters.dropped: dataset``)
TRUE_PROB = "clip_true_prob"
SAMPLES_PER_SPLIT = 6
HISTOGRAM_COLUMNS = 4
HISTOGRAM_BINS = 20  # over [0, 1]
DPI = 100
_CELL = (1.6, 1.85)  # inches per sample image (width, height with its caption)
_TITLE = 0.5  # inches for a figure's title
_PANEL = (3.2, 2.4)  # inches per class panel of the histogram
_AXIS_LABELS = 0.4  # inches below the lowest panels, for their tick labels and axis label


def samples_name(label: int) -> str:
    return f"{PICTURES_DIR}/samples-class-{label:03d}.png"


def picture_alt(path: str, class_names: list[str]) -> str:
    """What a picture written here shows, in words (the card's alt text), class names included."""
    match = re.fullmatch(rf"{PICTURES_DIR}/samples-class-(\d+)\.png", path)
    if match:
        label = int(match[1])
        return f"sample images of class {label}: {class_names[label]}, per split"
    if path == EMBEDDING_MAP_NAME:
        return "CLIP image embeddings projected on two principal components, coloured by class, marked by split"
    return "CLIP probability of the true class, per class and split"


HISTOGRAM_NAME = f"{PICTURES_DIR}/clip-true-prob.png"


def samples_size(num_splits: int) -> tuple[int, int]:
    """Pixel size of a class's sample grid."""
    return round(SAMPLES_PER_SPLIT * _CELL[0] * DPI), round((num_splits * _CELL[1] + _TITLE) * DPI)


def histogram_size(num_classes: int) -> tuple[int, int]:
    """Pixel size of the histogram figure: one panel per class, ``HISTOGRAM_COLUMNS`` to a row."""
    columns, rows = min(num_classes, HISTOGRAM_COLUMNS), math.ceil(num_classes / HISTOGRAM_COLUMNS)
    return round(columns * _PANEL[0] * DPI), round((rows * _PANEL[1] + _TITLE) * DPI)


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


def write_pictures(
    root: Path,
    features: datasets.Features,
    splits: list[str],
    thresholds: dict | None = None,
    label_column: str = LABEL,
    tallies: Tallies | None = None,
) -> list[str]:
    """Draw every picture of the dataset at ``root``; returns their paths relative to it. ``thresholds``: the
    active filters (the histogram marks ``min_true_class_prob``); ``tallies``: shared with the summary."""
    root = Path(root)
    (root / PICTURES_DIR).mkdir(exist_ok=True)
    for stale in (root / PICTURES_DIR).glob("*.png"):
        stale.unlink()  # a class or the score column may be gone since the last export
    class_names = features[label_column].names
    sources = split_rows(root, splits)
    scores = read_scores(sources, features, label_column, tallies)
    with picture_style():
        written = [
            _save(sample_grid(features, sources, scores, label, name, label_column), root / samples_name(label))
            for label, name in enumerate(class_names)
        ]
        if TRUE_PROB in features:
            threshold = (thresholds or {}).get("min_true_class_prob")
            figure = histogram(sources, scores, class_names, threshold, label_column)
            written.append(_save(figure, root / HISTOGRAM_NAME))
    return [str(Path(p).relative_to(root)) for p in written]


def _figure(width: int, height: int) -> Figure:
    """A figure on the Agg canvas, without pyplot: no backend is chosen, no global figure is kept."""
    figure = Figure(figsize=(width / DPI, height / DPI))
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, format="png")
    return path


@dataclass(frozen=True)
class Scores:
    """What the pictures show, read once: per (split, kept?) the rows of each class and the histogram of CLIP's
    true-class probability (``synthcore.readback.Tally``), and per split the first rows of each class."""

    tallies: dict[tuple[str, bool], Tally]
    samples: dict[str, dict[int, list[dict]]]


def shared_tallies(classes: int, label_column: str = LABEL) -> Tallies:
    """One reading of a dataset's files for its summary and its pictures both: every summary statistic's column,
    CLIP's true-class probability binned, and the files of each class's first sample rows located."""
    return Tallies(
        classes, [*STAT_COLUMNS, TRUE_PROB], [*MEDIAN_COLUMNS, TRUE_PROB], label_column, locate=SAMPLES_PER_SPLIT
    )


def read_scores(
    sources: list[SplitRows], features: datasets.Features, label_column: str = LABEL, tallies: Tallies | None = None
) -> Scores:
    """The label column (and CLIP's true-class probability, where the dataset has it) of every split's kept and
    dropped rows, tallied file by file, and the first ``SAMPLES_PER_SPLIT`` kept rows of each class: no other
    image is read, and memory does not grow with the rows. ``tallies``: shared with the summary."""
    tallies = tallies or shared_tallies(features[label_column].num_classes, label_column)
    counted = {
        (source.name, kept): tallies.of(split_files(*where) if where else [])
        for source in sources
        for kept, where in ((True, source.kept), (False, source.dropped))
    }
    samples = {
        source.name: first_rows_by_class(counted[source.name, True], features, SAMPLES_PER_SPLIT, label_column)
        for source in sources
    }
    return Scores(counted, samples)


def sample_grid(
    features: datasets.Features, sources: list[SplitRows], scores: Scores, label: int, name: str, label_column: str
) -> Figure:
    """One class: a row of its first images per split, or the reason a split has none (draw in ``picture_style``).
    A split's images are one picture side by side (``sample_strip``), captioned by its tick labels: one axes per
    split, so drawing costs the same whatever the images."""
    width, height = samples_size(len(sources))
    figure = _figure(width, height)
    axes = figure.subplots(len(sources), 1, squeeze=False)[:, 0]
    figure.suptitle(class_title(label, name), fontsize=11)
    image_column = next(column for column, feature in features.items() if isinstance(feature, datasets.Image))
    for ax, source in zip(axes, sources):
        samples = scores.samples[source.name].get(label, [])
        ax.set_frame_on(False)
        ax.set_yticks([])
        ax.set_ylabel(shown(source.name), fontsize=9)
        ax.imshow(sample_strip([row[image_column] for row in samples]), interpolation="nearest")
        captions = [f"p(true) = {row[TRUE_PROB]:.2f}" if TRUE_PROB in row else "" for row in samples]
        ax.set_xticks([(i + 0.5) * (_TILE + _GAP) for i in range(len(samples))], captions, fontsize=8)
        ax.tick_params(length=0)
        if not samples:
            dropped = int(scores.tallies[source.name, False].rows[label])
            why = f"the filters dropped all {dropped} image{'s' * (dropped != 1)}" if dropped else "no image"
            ax.text(
                0.01,
                0.5,
                f"{why} of this class in {shown(source.name)}",
                transform=ax.transAxes,
                fontsize=10,
                va="center",
                ha="left",
                color="dimgray",
            )
    figure.subplots_adjust(left=0.04, right=0.99, bottom=0.06, top=1 - _TITLE / (height / DPI), hspace=0.3)
    return figure


_TILE, _GAP = 144, 12  # pixels of a sample image in a strip, and between two


def sample_strip(images: list[PIL.Image.Image]) -> np.ndarray:
    """``SAMPLES_PER_SPLIT`` tiles side by side on white, each image fitted into its tile (enlarged without
    smoothing, so small images stay sharp)."""
    strip = PIL.Image.new("RGB", (SAMPLES_PER_SPLIT * (_TILE + _GAP), _TILE), "white")
    for i, image in enumerate(images):
        resample = PIL.Image.Resampling.NEAREST if max(image.size) < _TILE else PIL.Image.Resampling.LANCZOS
        tile = PIL.ImageOps.pad(image.convert("RGB"), (_TILE, _TILE), method=resample, color="white")
        strip.paste(tile, (i * (_TILE + _GAP) + _GAP // 2, 0))
    return np.asarray(strip)


def histogram(
    sources: list[SplitRows], scores: Scores, class_names: list[str], threshold: float | None, label_column: str
) -> Figure:
    """CLIP's true-class probability per class: each split's kept and dropped rows, and the filter's threshold."""
    width, height = histogram_size(len(class_names))
    ncols, nrows = min(len(class_names), HISTOGRAM_COLUMNS), math.ceil(len(class_names) / HISTOGRAM_COLUMNS)
    figure = _figure(width, height)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    figure.suptitle("CLIP probability of the true class", fontsize=11)
    bins = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    filtered = threshold is not None or any(scores.tallies[source.name, False].rows.sum() for source in sources)
    for label, ax in enumerate(axes.flat):
        if label >= len(class_names):
            ax.set_visible(False)
            continue
        for index, source in enumerate(sources):
            for kept, style in ((True, "-"), (False, ":")):
                tally = scores.tallies[source.name, kept]
                present = tally.present(TRUE_PROB, label)
                if kept or present:
                    what = ("kept " if kept else "dropped ") if filtered else ""
                    ax.hist(  # the counts of each bin as weights: the same steps as the values would draw
                        bins[:-1],
                        bins=bins,
                        weights=tally.histogram(TRUE_PROB, label, HISTOGRAM_BINS),
                        histtype="step",
                        linewidth=1.5,
                        linestyle=style,
                        color=f"C{index}",
                        label=f"{shown(source.name)}: {what}{present}",
                    )
        ax.set_title(class_title(label, class_names[label]), fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("CLIP p(true class)", fontsize=7)
        ax.set_ylabel("images", fontsize=7)
        if threshold is not None:
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"filter ≥ {threshold:g}")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    inches = height / DPI
    figure.subplots_adjust(
        left=0.06, right=0.98, bottom=_AXIS_LABELS / inches, top=1 - _TITLE / inches, wspace=0.25, hspace=0.45
    )
    return figure


def class_title(label: int, name: str) -> str:
    """``class 0: fox``, ``class 2: 여우``: the name in its own script, a character no font has as its escape."""
    return f"class {label}: {shown(name)}"


EMBEDDING_MAP_NAME = f"{PICTURES_DIR}/clip-embeddings.png"
EMBEDDING_MAP_SIZE = (900, 700)  # pixels
_MARKERS = "o^sDvPX*<>"


def write_embedding_map(
    root: Path,
    points,
    labels,
    splits: list[str],
    class_names: list[str],
    explained: tuple[float, float],
) -> str:
    """The CLIP embeddings projected on their first two principal components (``eval.quality.project``):
    colour by class, marker by split. Classes that overlap here may still separate in the full space; classes
    that sit apart are easy for a classifier. Returns the picture's path relative to ``root``."""
    figure = _figure(*EMBEDDING_MAP_SIZE)
    ax = figure.subplots()
    colours = matplotlib.colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    split_order = list(dict.fromkeys(splits))
    with picture_style():
        for s, split in enumerate(split_order):
            for label, name in enumerate(class_names):
                chosen = (np.asarray(labels) == label) & (np.asarray(splits) == split)
                if chosen.any():
                    ax.scatter(
                        points[chosen, 0],
                        points[chosen, 1],
                        s=14,
                        alpha=0.7,
                        color=colours(label % colours.N),
                        marker=_MARKERS[s % len(_MARKERS)],
                        label=f"{class_title(label, name)} · {shown(split)}",
                    )
        ax.set_xlabel(f"principal component 1 ({explained[0]:.0%} of the variance)", fontsize=8)
        ax.set_ylabel(f"principal component 2 ({explained[1]:.0%} of the variance)", fontsize=8)
        ax.set_title("CLIP image embeddings: colour = class, marker = split", fontsize=11)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.subplots_adjust(left=0.08, right=0.72, bottom=0.09, top=0.93)
    path = Path(root) / EMBEDDING_MAP_NAME
    path.parent.mkdir(exist_ok=True)
    _save(figure, path)
    return EMBEDDING_MAP_NAME
