"""Filters keep and drop exactly what their thresholds say, lose nothing, and report emptied classes loudly.

The filtered builds reuse the smoke build's finished shards (filters are not part of the content fingerprint),
so they run only the export, with thresholds taken from the smoke build's actual scores.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import datasets
import pyarrow as pa
import pytest

from eval.filters import FilterSettings, keep_mask
from eval.summary import read_summary, write_summary
from tests.helpers import ROOT, build_here, write_recipe

CLASSES = ["fox", "dog", "여우"]


def test_keep_mask_thresholds_and_null_match_passes():
    table = pa.table(
        {
            "clip_true_prob": pa.array([0.2, 0.5, 0.9, 0.9, None], pa.float32()),
            "clip_score": pa.array([30, 30, 10, 30, 30], pa.float32()),
            "resnet50_match": [True, None, True, False, True],
        }
    )
    mask = lambda **kw: keep_mask(table, FilterSettings(**kw)).to_pylist()
    assert mask() == [True] * 5
    assert mask(min_true_class_prob=0.5) == [False, True, True, True, False]
    assert mask(min_clip_score=20) == [True, True, False, True, True]
    assert mask(require_imagenet_match=True) == [True, True, True, False, True]
    assert mask(min_true_class_prob=0.5, min_clip_score=20, require_imagenet_match=True) == [
        False,
        True,
        False,
        False,
        False,
    ]


@pytest.fixture(scope="module")
def scores(smoke_dir: Path) -> dict[str, dict]:
    """Every smoke row's scores by id."""
    smoke = datasets.load_dataset(str(smoke_dir))
    columns = ["id", "label", "clip_true_prob", "clip_score", "resnet50_match"]
    return {row["id"]: {**row, "split": split} for split, ds in smoke.items() for row in ds.select_columns(columns)}


def between(values: list[float], below: float) -> float:
    """A threshold halfway between ``below`` and the next larger value: rows at ``below`` fail, larger ones pass."""
    above = min(v for v in values if v > below)
    return (below + above) / 2


def filtered_build(smoke_dir: Path, tmp_path: Path, filters: str) -> tuple[Path, str]:
    out = tmp_path / "out"
    shutil.copytree(smoke_dir / ".synthdata", out / ".synthdata")
    recipe = write_recipe(
        tmp_path, (ROOT / "recipes" / "smoke.yaml").read_text(encoding="utf-8") + f"filters: {filters}\n"
    )
    result = build_here(str(recipe), "--output-dir", str(out))
    assert json.loads((out / ".synthdata" / "run.json").read_text())["images_generated"] == 0  # only the export ran
    return out, result.stderr + result.stdout


def ids_by_split(path: Path) -> dict[str, list[str]]:
    return {split: ds["id"][:] for split, ds in datasets.load_dataset(str(path)).items()}


def check_summary(out: Path, scores: dict, kept: set[str]) -> list[str]:
    """summary.json counts equal the expected ones; returns the classes it flags as emptied."""
    summary = json.loads((out / "summary.json").read_text())
    for entry in summary["classes"]:
        rows = [
            i
            for i, r in scores.items()
            if r["split"] == entry["split"] and r["label"] == CLASSES.index(entry["class_name"])
        ]
        n_kept = len([i for i in rows if i in kept])
        assert (entry["generated"], entry["kept"], entry["dropped"]) == (len(rows), n_kept, len(rows) - n_kept)
        assert entry["emptied_by_filters"] == (n_kept == 0)
    return summary["emptied_by_filters"]


@pytest.mark.e2e
def test_dropped_dataset_mode(smoke_dir: Path, tmp_path: Path, scores: dict, caplog):
    probs = [r["clip_true_prob"] for r in scores.values()]
    lowest_group_max = min(
        max(r["clip_true_prob"] for r in scores.values() if (r["split"], r["label"]) == g)
        for g in {(r["split"], r["label"]) for r in scores.values()}
    )
    threshold = between(probs, lowest_group_max)  # empties at least that split/class, keeps some rows
    out, log = filtered_build(smoke_dir, tmp_path, f"{{min_true_class_prob: {threshold!r}}}")

    kept = {i for i, r in scores.items() if r["clip_true_prob"] >= threshold}
    assert kept and len(kept) < len(scores)
    found_kept, found_dropped = ids_by_split(out), ids_by_split(out / "dropped")
    assert {i for ids in found_kept.values() for i in ids} == kept
    assert {i for ids in found_dropped.values() for i in ids} == set(scores) - kept
    for split, ids in [*found_kept.items(), *found_dropped.items()]:
        assert all(i.startswith(f"{split}/") for i in ids)
    emptied = check_summary(out, scores, kept)
    assert emptied and all(f"filters dropped every image of {where}" in log for where in emptied)
    assert "the filters dropped every image of this class" in log  # the printed table's footer
    caplog.clear()  # the build ran in this process: its own records are not write_summary's
    with caplog.at_level(logging.WARNING, logger="eval.summary"):
        write_summary(tmp_path, read_summary(out))
    emptied_records = [r for r in caplog.records if "filters dropped every image" in r.getMessage()]
    assert [r.levelno for r in emptied_records] == [logging.WARNING] * len(emptied)  # (beside the smoke's leakage)
    assert "min_true_class_prob" in (out / "dropped" / "README.md").read_text(encoding="utf-8")
    assert json.loads((out / "build_info.json").read_text())["rows"] == {s: len(ids) for s, ids in found_kept.items()}


@pytest.mark.e2e
def test_dropped_split_mode_keeps_image_bytes(smoke_dir: Path, tmp_path: Path, scores: dict):
    clip_scores = [r["clip_score"] for r in scores.values()]
    threshold = between(clip_scores, min(clip_scores))
    out, _ = filtered_build(
        smoke_dir, tmp_path, f"{{min_clip_score: {threshold!r}, require_imagenet_match: true, dropped: split}}"
    )

    kept = {i for i, r in scores.items() if r["clip_score"] >= threshold and r["resnet50_match"] is not False}
    assert kept and len(kept) < len(scores)
    found = ids_by_split(out)
    assert not (out / "dropped").exists()
    assert set(found) <= {"train", "test", "train_dropped", "test_dropped"} and {
        "train_dropped",
        "test_dropped",
    } <= set(found)
    assert {i for s, ids in found.items() if not s.endswith("_dropped") for i in ids} == kept
    assert {i for s, ids in found.items() if s.endswith("_dropped") for i in ids} == set(scores) - kept
    check_summary(out, scores, kept)

    as_bytes = lambda path, split: {
        r["id"]: r["image"]["bytes"]
        for r in datasets.load_dataset(str(path), split=split).cast_column("image", datasets.Image(decode=False))
    }
    original = as_bytes(smoke_dir, "train")
    assert as_bytes(out, "train_dropped") == {i: original[i] for i in found["train_dropped"]}


@pytest.mark.e2e
def test_a_split_the_filters_empty_is_absent_and_the_dataset_still_pushable(
    smoke_dir: Path, tmp_path: Path, scores: dict
):
    from builders.hub import dataset_problems
    from builders.recipe import load_recipe

    test_max = max(r["clip_true_prob"] for r in scores.values() if r["split"] == "test")
    assert any(r["clip_true_prob"] > test_max for r in scores.values() if r["split"] == "train")
    out, _ = filtered_build(
        smoke_dir,
        tmp_path,
        f"{{min_true_class_prob: {between([r['clip_true_prob'] for r in scores.values()], test_max)!r}}}",
    )
    assert list(ids_by_split(out)) == ["train"] and "test" in ids_by_split(out / "dropped")
    assert dataset_problems(out, load_recipe(out / "recipe.yaml")) == []


@pytest.mark.e2e
def test_filters_that_keep_nothing_fail_clearly_and_lose_nothing(smoke_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    shutil.copytree(smoke_dir / ".synthdata", out / ".synthdata")
    recipe = write_recipe(
        tmp_path,
        (ROOT / "recipes" / "smoke.yaml").read_text(encoding="utf-8") + "filters: {min_true_class_prob: 1.0}\n",
    )
    result = build_here(str(recipe), "--output-dir", str(out), check=False)
    assert (
        result.returncode == 2
        and "no image is left in any split" in result.stderr
        and "nothing is regenerated" in result.stderr
    )
    dropped = datasets.load_dataset(str(out / "dropped"))
    assert sum(ds.num_rows for ds in dropped.values()) == 18 and (out / "dropped" / "README.md").exists()
    assert json.loads((out / "summary.json").read_text())["emptied_by_filters"]
