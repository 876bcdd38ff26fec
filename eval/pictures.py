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

import functools
import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import matplotlib
import numpy as np
import PIL.Image
import PIL.ImageColor
import PIL.ImageDraw
import PIL.ImageOps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.scorers.clip import TRUE_PROB
from eval.tallies import SAMPLES_PER_SPLIT, SplitRows, image_column, shared_tallies, split_rows
from synthcore.columns import LABEL
from synthcore.fonts import picture_style, shown, text_runs
from synthcore.parallel import ordered_map
from synthcore.readback import Tallies, Tally, first_rows_by_class, split_files

PICTURES_DIR = "pictures"
HISTOGRAM_COLUMNS = 4
HISTOGRAM_BINS = 20  # over [0, 1]
HISTOGRAM_CLASSES = 24  # panels at most: beyond, the classes CLIP is least sure of (every class is in the summary)
DPI = 100
_CELL = (1.6, 1.85)  # inches per sample image (width, height with its caption)
_TITLE = 0.5  # inches for a figure's title
_PANEL_TITLE = 0.3  # inches between the histogram's title and its first panels, for the panels' titles
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
    return histogram_title(len(class_names))


HISTOGRAM_NAME = f"{PICTURES_DIR}/clip-true-prob.png"


def samples_size(num_splits: int, columns: int = SAMPLES_PER_SPLIT) -> tuple[int, int]:
    """Pixel size of a class's sample grid (of a grid of ``columns`` images to a row)."""
    return round(columns * _CELL[0] * DPI), round((num_splits * _CELL[1] + _TITLE) * DPI)


def histogram_size(num_classes: int) -> tuple[int, int]:
    """Pixel size of the histogram figure: one panel per class shown (``HISTOGRAM_CLASSES`` at most),
    ``HISTOGRAM_COLUMNS`` to a row."""
    panels = min(num_classes, HISTOGRAM_CLASSES)
    columns, rows = min(panels, HISTOGRAM_COLUMNS), math.ceil(panels / HISTOGRAM_COLUMNS)
    return round(columns * _PANEL[0] * DPI), round((rows * _PANEL[1] + _TITLE + _PANEL_TITLE) * DPI)


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
        grids = (  # drawn here (fonts are used by one thread), encoded on threads (zlib releases the GIL)
            (draw_grid(sample_grid(features, sources, scores, label, name, label_column)), root / samples_name(label))
            for label, name in enumerate(class_names)
        )
        written = list(ordered_map(_save_grid, grids))
        if TRUE_PROB in features:
            threshold = (thresholds or {}).get("min_true_class_prob")
            figure = histogram(sources, scores, class_names, threshold, label_column)
            written.append(_save(figure, root / HISTOGRAM_NAME))
    return [str(Path(p).relative_to(root)) for p in written]


def _save_grid(drawn: tuple[PIL.Image.Image, Path]) -> Path:
    picture, path = drawn
    picture.save(path, format="PNG", compress_level=GRID_COMPRESSION)
    return path


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
    shown = [image_column(features), *([TRUE_PROB] if TRUE_PROB in features else [])]
    samples = {
        source.name: first_rows_by_class(counted[source.name, True], features, SAMPLES_PER_SPLIT, label_column, shown)
        for source in sources
    }
    return Scores(counted, samples)


@dataclass(frozen=True)
class GridRow:
    """One split's row of a class's sample grid: its images and their captions, or why it has none."""

    split: str
    images: list[PIL.Image.Image]
    captions: list[str]
    note: str | None


@dataclass(frozen=True)
class Grid:
    """A class's sample grid in words and images, before it is drawn (``draw_grid``)."""

    title: str
    rows: list[GridRow]

    def texts(self) -> list[str]:
        """Every text the drawing shows."""
        return [self.title] + [t for row in self.rows for t in (row.split, *row.captions, row.note) if t]


def sample_grid(
    features: datasets.Features, sources: list[SplitRows], scores: Scores, label: int, name: str, label_column: str
) -> Grid:
    """One class: its first images per split, each captioned with CLIP's probability of the true class, or the
    reason a split has none."""
    images = image_column(features)
    rows = []
    for source in sources:
        samples = scores.samples[source.name].get(label, [])
        note = None
        if not samples:
            dropped = int(scores.tallies[source.name, False].rows[label])
            why = f"the filters dropped all {dropped} image{'s' * (dropped != 1)}" if dropped else "no image"
            note = f"{why} of this class in {source.name}"
        captions = [f"p(true) = {row[TRUE_PROB]:.2f}" if TRUE_PROB in row else "" for row in samples]
        rows.append(GridRow(source.name, [row[images] for row in samples], captions, note))
    return Grid(class_title(label, name), rows)


_TILE, _GAP = 144, 12  # pixels of a sample image in a grid, and between two
_ROW = (18, 23)  # pixels above a row's images (the split's name) and below them (the captions)
# zlib level of the grids' PNGs: on photo-like tiles level 1 encodes in 0.27 s where the default 6 takes 0.42 s, for
# 11% more bytes (a 960x600 grid, busy 2-core machine); encoding is most of a grid's cost with real images
GRID_COMPRESSION = 1
_TEXT = {"title": 15, "split": 13, "caption": 11, "note": 14}  # pixels


def draw_grid(grid: Grid) -> PIL.Image.Image:
    """The grid composed with PIL (``samples_size``): one row per split under the title, each image fitted into
    its tile (enlarged without smoothing, so small images stay sharp). No matplotlib figure: a class costs a few
    milliseconds, so a dataset of 1,000 classes draws its grids in seconds. A row of more than
    ``SAMPLES_PER_SPLIT`` images (a build's preview) widens the grid."""
    columns = max([SAMPLES_PER_SPLIT, *(len(row.images) for row in grid.rows)])
    width, height = samples_size(len(grid.rows), columns)
    picture = PIL.Image.new("RGB", (width, height), "white")
    row_height = (height - round(_TITLE * DPI)) / max(len(grid.rows), 1)
    _draw_text(picture, (width / 2, _TITLE * DPI / 2), grid.title, _TEXT["title"], "black", centred=True)
    left = (width - columns * (_TILE + _GAP)) // 2 + _GAP // 2
    for i, row in enumerate(grid.rows):
        top = round(_TITLE * DPI + i * row_height)
        _draw_text(picture, (left, top + _ROW[0] / 2), row.split, _TEXT["split"], "black")
        for j, (image, caption) in enumerate(zip(row.images, row.captions)):
            x = left + j * (_TILE + _GAP)
            resample = PIL.Image.Resampling.NEAREST if max(image.size) < _TILE else PIL.Image.Resampling.LANCZOS
            picture.paste(
                PIL.ImageOps.pad(image.convert("RGB"), (_TILE, _TILE), method=resample, color="white"),
                (x, top + _ROW[0]),
            )
            _draw_text(
                picture,
                (x + _TILE / 2, top + _ROW[0] + _TILE + _ROW[1] / 2),
                caption,
                _TEXT["caption"],
                "black",
                centred=True,
            )
        if row.note:
            _draw_text(picture, (left, top + _ROW[0] + _TILE / 2), row.note, _TEXT["note"], "dimgray")
    return picture


def _draw_text(
    picture: PIL.Image.Image, xy: tuple[float, float], text: str, pixels: int, fill: str, centred: bool = False
) -> None:
    """``text`` vertically centred on ``xy`` (from its left end, or centred on it), class names in their own
    script (``synthcore.fonts.text_runs``)."""
    drawn, width = _text_picture(text, pixels, fill)
    left = xy[0] - (width / 2 if centred else 0) - _TEXT_MARGIN
    picture.paste(drawn, (round(left), round(xy[1] - drawn.height / 2)), drawn)


_TEXT_MARGIN = 2  # pixels left of a drawn text, for a glyph that reaches left of its origin


@functools.lru_cache(maxsize=256)
def _text_picture(text: str, pixels: int, fill: str) -> tuple[PIL.Image.Image, float]:
    """``text`` drawn once on a transparent canvas, vertically centred, and its advance width: the split names
    and the captions (a hundred values) recur in every grid, and rendering them each time was most of a grid's
    drawing. Pasted with its alpha, it looks as drawing it there looks (placed to the whole pixel)."""
    runs = text_runs(text, pixels)
    width = sum(font.getlength(run) for font, run in runs)
    colour = PIL.ImageColor.getrgb(fill)
    canvas = PIL.Image.new("RGBA", (math.ceil(width) + 2 * _TEXT_MARGIN, 2 * pixels), (*colour, 0))
    draw, x = PIL.ImageDraw.Draw(canvas), _TEXT_MARGIN
    for font, run in runs:
        draw.text((x, pixels), run, font=font, fill=fill, anchor="lm")
        x += font.getlength(run)
    return canvas, width


def histogram(
    sources: list[SplitRows], scores: Scores, class_names: list[str], threshold: float | None, label_column: str
) -> Figure:
    """CLIP's true-class probability per class: each split's kept and dropped rows, and the filter's threshold.
    One panel per class up to ``HISTOGRAM_CLASSES`` classes; beyond, the panels of the classes with the lowest
    mean probability (``histogram_classes``): the figure and its cost stay the same at 1,000 classes."""
    shown_labels = histogram_classes(scores, len(class_names))
    width, height = histogram_size(len(class_names))
    ncols, nrows = min(len(shown_labels), HISTOGRAM_COLUMNS), math.ceil(len(shown_labels) / HISTOGRAM_COLUMNS)
    figure = _figure(width, height)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    figure.suptitle(histogram_title(len(class_names)), fontsize=11)
    bins = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    filtered = threshold is not None or any(scores.tallies[source.name, False].rows.sum() for source in sources)
    for index, ax in enumerate(axes.flat):
        if index >= len(shown_labels):
            ax.set_visible(False)
            continue
        label = shown_labels[index]
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
        left=0.06,
        right=0.98,
        bottom=_AXIS_LABELS / inches,
        top=1 - (_TITLE + _PANEL_TITLE) / inches,
        wspace=0.25,
        hspace=0.45,
    )
    return figure


def histogram_classes(scores: Scores, num_classes: int) -> list[int]:
    """The classes the histogram shows: all of them up to ``HISTOGRAM_CLASSES``, else that many with the lowest
    mean CLIP probability of the true class over every split's rows, kept and dropped (a class without a score
    first), in label order."""
    if num_classes <= HISTOGRAM_CLASSES:
        return list(range(num_classes))
    every = functools.reduce(operator.add, scores.tallies.values())
    means = [every.mean(TRUE_PROB, label) for label in range(num_classes)]
    lowest = sorted(range(num_classes), key=lambda label: (means[label] is not None, means[label] or 0, label))
    return sorted(lowest[:HISTOGRAM_CLASSES])


def histogram_title(num_classes: int) -> str:
    """The histogram's title, saying which classes it shows (its alt text too)."""
    if num_classes <= HISTOGRAM_CLASSES:
        return "CLIP probability of the true class, per class and split"
    return (
        f"CLIP probability of the true class per split, for the {HISTOGRAM_CLASSES} of {num_classes} classes "
        "with the lowest mean"
    )


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
