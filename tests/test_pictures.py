"""Pictures that explain themselves, on hand-made datasets in the Hub layout: class names in their own script (no
missing glyph), a class the filters emptied says so, the histogram shows kept and dropped rows and the threshold;
training's plots draw Korean class names too."""

from __future__ import annotations

import warnings
from pathlib import Path

import datasets
import pytest
from PIL import Image

from eval.pictures import histogram, read_scores, sample_grid, split_rows, write_pictures
from synthcore.fonts import font_families, picture_style, shown
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
        fox = texts(sample_grid(FEATURES, sources, scores, 0, "fox", "label"))
        korean = texts(sample_grid(FEATURES, sources, scores, 2, "여우", "label"))
        bars = texts(histogram(sources, scores, NAMES, 0.5, "label"))
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
    with picture_style():
        grid = texts(sample_grid(FEATURES, sources, read_scores(sources, FEATURES), 2, "여우", "label"))
    assert "the filters dropped all 1 image of this class in train" in grid


def test_pictures_and_training_plots_warn_of_no_missing_glyph(filtered: Path, tmp_path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" for a box
        write_pictures(filtered, FEATURES, ["train", "test"], {"min_true_class_prob": 0.5})
        plot_confusion(tmp_path, "여우 test", [[1, 0, 0], [0, 1, 0], [1, 0, 1]], NAMES)
        epoch = {"epoch": 1, "train": {"loss": 1.0, "accuracy": 0.5}, "eval": {"여우": {"loss": 1.0, "accuracy": 0.5}}}
        plot_curves(tmp_path, [epoch])
    assert len(list(tmp_path.glob("confusion_*.png"))) == 1 and (tmp_path / "curves.png").is_file()
