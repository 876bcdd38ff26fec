"""Pictures that explain themselves, on hand-made datasets in the Hub layout: class names in their own script (no
missing glyph), a class the filters emptied says so, the histogram shows kept and dropped rows and the threshold;
training's plots draw Korean class names too."""

from __future__ import annotations

import warnings
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from eval.pictures import (
    HISTOGRAM_CLASSES,
    histogram,
    histogram_classes,
    histogram_size,
    picture_alt,
    read_scores,
    sample_grid,
    write_pictures,
)
from eval.tallies import split_rows
from synthcore.fonts import font_families, picture_style, shown, text_runs
from synthcore.readback import HISTOGRAM_BINS, first_rows_by_class, tally_files
from training.report import plot_confusion, plot_curves

NAMES = ["fox", "dog", "여우"]
FEATURES = datasets.Features(
    {"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES), "clip_true_prob": datasets.Value("float32")}
)


def write_split(path: Path, labels: list[int], prob: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(
        {
            "image": [Image.new("RGB", (16, 16), (80 * label, 40, 90)) for label in labels],
            "label": labels,
            "clip_true_prob": [prob + 0.01 * i for i in range(len(labels))],
        },
        features=FEATURES,
    ).to_parquet(str(path))


@pytest.fixture(params=["dataset", "split"])
def filtered(request, tmp_path: Path) -> Path:
    """train: every fox dropped (3), one dog dropped; test: nothing dropped. Dropped rows as the recipe's
    ``filters.dropped`` puts them: a ``dropped/`` dataset, or ``<split>_dropped`` splits."""
    write_split(tmp_path / "data" / "train-00000-of-00001.parquet", [1, 1, 2, 2], 0.6)
    write_split(tmp_path / "data" / "test-00000-of-00001.parquet", [0, 1, 2], 0.7)
    dropped = tmp_path / ("dropped/data/train" if request.param == "dataset" else "data/train_dropped")
    write_split(Path(f"{dropped}-00000-of-00001.parquet"), [0, 0, 0, 1], 0.2)
    return tmp_path


def texts(figure) -> list[str]:
    found = [t.get_text() for ax in figure.axes for t in ax.texts] + [figure.get_suptitle()]
    for ax in figure.axes:
        found += [ax.get_title()] + ([t.get_text() for t in legend.get_texts()] if (legend := ax.get_legend()) else [])
    return found


def test_korean_class_names_are_drawn_with_real_glyphs():
    assert len(font_families()) == 2, "no CJK font registered: is the noto-cjk-sans-otc package installed?"
    assert shown("여우 狐 キツネ fox $x^$") == "여우 狐 キツネ fox $x^$"
    assert shown("fox 🦊") == "fox \\U0001f98a"  # no font has it: an escape, not a box


def test_a_class_the_filters_emptied_says_so_and_the_histogram_shows_kept_and_dropped(filtered: Path):
    sources = split_rows(filtered, ["train", "test", "train_dropped"])
    assert [s.name for s in sources] == ["train", "test"]
    scores = read_scores(sources, FEATURES)
    with picture_style():
        bars = texts(histogram(sources, scores, NAMES, 0.5, "label"))
    fox = sample_grid(FEATURES, sources, scores, 0, "fox", "label").texts()
    korean = sample_grid(FEATURES, sources, scores, 2, "여우", "label").texts()
    assert "the filters dropped all 3 images of this class in train" in fox and "class 0: fox" in fox
    assert "class 2: 여우" in korean and not any("dropped" in t for t in korean)
    assert {"train: kept 0", "train: dropped 3", "test: kept 1", "filter ≥ 0.5", "train: dropped 1"} <= set(bars)
    assert "class 2: 여우" in bars


def test_a_split_with_only_dropped_rows_still_has_its_row(tmp_path: Path):
    write_split(tmp_path / "data" / "test-00000-of-00001.parquet", [0, 1], 0.7)
    write_split(tmp_path / "dropped" / "data" / "train-00000-of-00001.parquet", [0, 1, 2], 0.1)
    sources = split_rows(tmp_path, ["test"])
    assert [(s.name, s.kept is not None, s.dropped is not None) for s in sources] == [
        ("test", True, False),
        ("train", False, True),
    ]
    grid = sample_grid(FEATURES, sources, read_scores(sources, FEATURES), 2, "여우", "label").texts()
    assert "the filters dropped all 1 image of this class in train" in grid


def test_pictures_and_training_plots_warn_of_no_missing_glyph(filtered: Path, tmp_path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" for a box
        write_pictures(filtered, FEATURES, ["train", "test"], {"min_true_class_prob": 0.5})
        plot_confusion(tmp_path, "여우 test", [[1, 0, 0], [0, 1, 0], [1, 0, 1]], NAMES)
        epoch = {"epoch": 1, "train": {"loss": 1.0, "accuracy": 0.5}, "eval": {"여우": {"loss": 1.0, "accuracy": 0.5}}}
        plot_curves(tmp_path, [epoch])
    assert len(list(tmp_path.glob("confusion_*.png"))) == 1 and (tmp_path / "curves.png").is_file()


def test_grids_draw_korean_with_the_cjk_face_and_real_glyphs():
    runs = text_runs("class 2: 여우", 14)
    assert [(font.getname()[0], text) for font, text in runs] == [
        ("DejaVu Sans", "class 2: "),
        (font_families()[1], "여우"),
    ]
    korean = runs[1][0]
    assert bytes(korean.getmask("여")) != bytes(korean.getmask("우"))  # a missing glyph draws the same box for both


@pytest.mark.e2e  # draws the 24-panel histogram: ~13 s on a busy 2-core machine
def test_the_histogram_of_many_classes_shows_those_clip_is_least_sure_of(tmp_path: Path):
    names = [f"class{i}" for i in range(HISTOGRAM_CLASSES + 6)]
    features = datasets.Features({**FEATURES, "label": datasets.ClassLabel(names=names)})
    labels = [label for label in range(len(names)) for _ in range(2)]
    datasets.Dataset.from_dict(
        {
            "image": [Image.new("RGB", (8, 8), (label, 0, 0)) for label in labels],
            "label": labels,
            "clip_true_prob": [0.9 if label % 5 else 0.1 for label in labels],  # every fifth class: low
        },
        features=features,
    ).to_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))
    written = write_pictures(tmp_path, features, ["train"])
    assert len(written) == len(names) + 1
    with Image.open(tmp_path / written[-1]) as picture:
        assert picture.size == histogram_size(len(names)) == histogram_size(HISTOGRAM_CLASSES)
    scores = read_scores(split_rows(tmp_path, ["train"]), features)
    shown_labels = histogram_classes(scores, len(names))
    assert len(shown_labels) == HISTOGRAM_CLASSES and {0, 5, 10, 15, 20, 25} <= set(shown_labels)
    assert f"the {HISTOGRAM_CLASSES} of {len(names)} classes" in picture_alt(written[-1], names)


def test_tallies_bin_each_files_classes_where_they_belong(tmp_path: Path):
    """Files of one class, of a span of classes not starting at 0, and an empty one: every value in its class's bin."""
    files = {"a": [3, 3], "b": [1, 2, 2], "c": []}
    values = {}
    for name, labels in files.items():
        path = tmp_path / f"{name}.parquet"
        probs = [0.05 + 0.3 * i for i in range(len(labels))]
        values[name] = list(zip(labels, probs))
        pq.write_table(pa.table({"label": pa.array(labels, pa.int64()), "p": pa.array(probs, pa.float64())}), path)
    tally = tally_files([tmp_path / f"{name}.parquet" for name in files], 5, ["p"], ["p"], "label")
    expected = np.zeros((5, HISTOGRAM_BINS))
    for label, prob in (pair for pairs in values.values() for pair in pairs):
        expected[label, int(prob * HISTOGRAM_BINS)] += 1
    assert (tally.columns["p"].histogram == expected).all() and list(tally.rows) == [0, 1, 2, 2, 0]
    assert tally.median("p", 2) == pytest.approx(0.5) and tally.mean("p", 3) == pytest.approx(0.2)


def test_first_rows_of_each_class_come_from_the_files_the_tally_located(tmp_path: Path):
    """Over many files read on threads, the first rows of each class are the dataset's first, in order, with only
    the columns asked for (and the label), the image decoded."""
    paths = []
    for index in range(12):  # class index % 3, four files each; a file's rows are numbered by clip_true_prob
        paths.append(tmp_path / f"train-{index:05d}.parquet")
        write_split(paths[-1], [index % 3] * 4, index / 100)
    tally = tally_files(paths, len(NAMES), ["clip_true_prob"], locate=6)
    assert tally.located == {label: [str(paths[label]), str(paths[label + 3])] for label in range(3)}
    rows = first_rows_by_class(tally, FEATURES, 6, columns=["image"])
    for label in range(3):
        assert [set(row) for row in rows[label]] == [{"image", "label"}] * 6
        assert all(isinstance(row["image"], Image.Image) and row["label"] == label for row in rows[label])
    every = first_rows_by_class(tally, FEATURES, 6)[2]
    assert [round(row["clip_true_prob"], 2) for row in every] == [0.02, 0.03, 0.04, 0.05, 0.05, 0.06]
