"""``python -m eval --compare``: datasets of the same classes scored alike and set side by side (``eval.compare``).

Fast tier: hand-made datasets without scorers (duplicates, tables, pictures, refusals); the e2e test scores the
smoke build and a hand-made dataset with the tiny random CLIP and checks the figures against ``python -m eval``'s."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from eval.compare import main
from synthcore.faults import OUTPUT_REFUSED
from tests.helpers import run_main

NO_SCORERS = ["--no-clip", "--no-resnet50"]


def image_dataset(root: Path, names: list[str], labels: list[int], repeat: tuple[int, int] | None = None) -> Path:
    """A dataset of noise images (``repeat``: row b is a copy of row a) in the Hub layout, as load_dataset reads it."""
    rng = np.random.default_rng(len(str(root)))
    pixels = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in labels]
    if repeat:
        pixels[repeat[1]] = pixels[repeat[0]]
    encoded = []
    for array in pixels:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        encoded.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    data = datasets.Dataset.from_dict({"image": encoded, "label": labels}, features=features)
    data.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


def test_two_datasets_side_by_side(tmp_path: Path, capsys):
    a = image_dataset(tmp_path / "a", ["cat", "dog"], [0, 0, 0, 1, 1, 1])
    b = image_dataset(tmp_path / "b", ["dog", "cat"], [0, 0, 0, 1, 1, 1], repeat=(0, 2))  # a dog twice
    out = tmp_path / "out"
    assert main(["--compare", str(a), str(b), "--output-dir", str(out), *NO_SCORERS]) == 0
    report = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert list(report) == ["a", "b"] and report["b"]["source"] == str(b)
    assert report["a"]["overall"]["images"] == 6 and report["a"]["overall"]["exact_duplicates"] == 0
    assert report["b"]["overall"]["exact_duplicates"] == 1
    dogs = {name: next(c for c in data["classes"] if c["class"] == "dog") for name, data in report.items()}
    assert dogs["a"]["exact_duplicates"] == 0 and dogs["b"]["exact_duplicates"] == 1 and dogs["b"]["images"] == 3
    assert dogs["b"]["clip_true_prob_mean"] is None and dogs["b"]["vendi"] is None  # no CLIP: not measured
    for name in report:  # each dataset's scored copy is a `python -m eval` output
        assert json.loads((out / report[name]["scored"] / "summary.json").read_text())["classes"][0]["generated"] == 3
    text = (out / "compare.md").read_text(encoding="utf-8")
    assert "| dog | train | b | 3 | 1 | 0 |" in text
    pictures = sorted(p.name for p in (out / "pictures").iterdir())
    assert pictures == ["compare-class-000.png", "compare-class-001.png"]
    assert all(f"(pictures/{p})" in text for p in pictures)
    assert (
        Image.open(out / "pictures" / pictures[1]).size[1]
        > Image.open(out / "scored/a/pictures/samples-class-001.png").size[1]
    )
    table = capsys.readouterr().out
    assert "dog      train  b             3          1       0" in table

    assert main(["--compare", str(a), str(b), "--output-dir", str(out), *NO_SCORERS]) == OUTPUT_REFUSED  # no overwrite
    assert main(["--compare", str(a), str(b), "--output-dir", str(out), "--overwrite", *NO_SCORERS]) == 0


def test_different_classes_are_refused_naming_both(tmp_path: Path, capsys):
    a = image_dataset(tmp_path / "a", ["cat", "dog"], [0, 1])
    c = image_dataset(tmp_path / "c", ["cat", "cow"], [0, 1])
    out = tmp_path / "out"
    assert main(["--compare", str(a), str(c), "--output-dir", str(out), *NO_SCORERS]) == 2
    error = capsys.readouterr().err
    assert "['cat', 'dog']" in error and "['cat', 'cow']" in error and str(c) in error
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, expected",
    [
        ([], "--compare needs two datasets or more"),
        (["--label-column", "image"], "expected a ClassLabel"),
        (["--probe"], "--probe and --eval-dataset go together"),
    ],
)
def test_bad_input_fails_clearly(tmp_path: Path, capsys, extra: list[str], expected: str):
    a = image_dataset(tmp_path / "a", ["cat", "dog"], [0, 1])
    others = [] if not extra else [str(a)]  # the same dataset twice: the comparison itself is refused first
    assert main(["--compare", str(a), *others, "--output-dir", str(tmp_path / "out"), *NO_SCORERS, *extra]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_help_names_the_comparison_and_the_scoring_options(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--compare", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "python -m eval --compare" in shown and "--probe" in shown and "--clip-model" in shown


@pytest.mark.e2e
def test_figures_are_those_of_python_m_eval(smoke_dir: Path, tmp_path: Path):
    """The smoke build against a hand-made dataset of its classes, with the tiny random CLIP, CMMD to that
    dataset and a probe measured on it: each dataset's figures in compare.json are the ones ``python -m eval``
    gives it alone, and the probes' those ``python -m training`` wrote."""
    names = datasets.load_dataset(str(smoke_dir), split="train").features["label"].names
    other = image_dataset(tmp_path / "other", names, [0, 0, 1, 1, 2, 2], repeat=(0, 1))
    options = ["--clip-model", "tiny-random", "--no-resnet50", "--reference", str(other)]  # CMMD to itself too
    from eval.standalone import main as evaluate

    out = tmp_path / "compare"  # both commands in this process; the probes are `python -m training` processes
    probe = ["--probe", "--eval-dataset", str(other), "--probe-args=--backbone-weights none --epochs 1"]
    run = run_main(main, "--compare", str(smoke_dir), str(other), "--output-dir", str(out), *options, *probe)
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    alone = tmp_path / "alone"
    single = run_main(evaluate, str(other), "--output-dir", str(alone), *options)
    assert single.returncode == 0, single.stderr
    summary = json.loads((alone / "summary.json").read_text(encoding="utf-8"))
    compared = report["other"]["classes"]
    assert [(c["split"], c["class"]) for c in compared] == [(c["split"], c["class_name"]) for c in summary["classes"]]
    for mine, theirs in zip(compared, summary["classes"]):
        assert mine["clip_true_prob_mean"] == pytest.approx(theirs["scores"]["clip_true_prob_mean"], abs=1e-6)
        assert mine["clip_score_mean"] == pytest.approx(theirs["scores"]["clip_score_mean"], abs=1e-4)
        assert mine["vendi"] == pytest.approx(theirs["diversity"]["vendi"], abs=1e-6)
        assert mine["exact_duplicates"] == theirs["duplicates"]["exact"]["within_split"]
        assert mine["cmmd"] == pytest.approx(theirs["cmmd"], abs=1e-9)
    assert report["other"]["overall"]["exact_duplicates"] == 1
    assert report["other"]["overall"]["cmmd"] == pytest.approx(summary["cmmd"]["overall"], abs=1e-9)
    assert report[Path(smoke_dir).name]["overall"]["cmmd"] > 0
    smoke = report[Path(smoke_dir).name]["overall"]
    assert smoke["images"] == 18 and 0 <= smoke["clip_true_prob_mean"] <= 1 and smoke["vendi"] >= 1
    assert "P(true) mean" in run.stdout and "Vendi" in run.stdout and "probe acc" in run.stdout
    for data in report.values():  # each probe's figures are those python -m training wrote
        final = json.loads((out / data["probe"]["metrics"]).read_text(encoding="utf-8"))["final"]
        assert data["overall"]["probe_accuracy"] == pytest.approx(final["other/train"]["accuracy"])
        assert data["probe"]["recall"] == pytest.approx(final["other/train"]["recall"])
    assert "## Linear probe on" in (out / "compare.md").read_text(encoding="utf-8")
