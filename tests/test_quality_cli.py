"""The quality pass from the command lines: ``python -m eval --reference`` and a build with ``quality.reference``,
and the embedding column leaving the smoke dataset's rows as they were."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
import yaml

from eval.standalone import main as evaluate
from tests.helpers import ROOT, build_here, run_main, write_recipe

pytestmark = pytest.mark.e2e


def reference_copy(smoke_dir: Path, out: Path, names: list[str]) -> Path:
    """The smoke build's train images as a 'real' dataset of its own: image and label only, renamed classes."""
    train = datasets.load_dataset(str(smoke_dir), split="train").select_columns(["image", "label"])
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    train.cast(features).to_parquet(str(out / "data" / "train-00000-of-00001.parquet"))
    return out


def test_cmmd_to_a_reference_with_mapped_labels(smoke_dir: Path, tmp_path: Path):
    real = reference_copy(smoke_dir, tmp_path / "real", ["renard", "dog", "여우"])
    out = tmp_path / "scored"
    command = [str(smoke_dir), "--output-dir", str(out), "--reference", str(real), "--label-map", "renard=fox"]
    result = run_main(evaluate, *command, "--clip-model", "tiny-random", "--resnet50-weights", "tiny-random")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    cmmd = {(c["split"], c["class_name"]): c["cmmd"] for c in summary["classes"]}
    assert all(cmmd[("train", name)] == pytest.approx(0, abs=1e-3) for name in ("fox", "dog", "여우"))  # itself
    assert all(cmmd[("test", name)] > 0 for name in ("fox", "dog", "여우"))
    assert summary["cmmd"]["reference_images"] == 12 and summary["cmmd"]["overall"] > 0
    assert summary["duplicates"]["threshold"] == 0.95 and (out / "duplicates.parquet").is_file()
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Is it any good?" in card and "CMMD" in card and "pictures/clip-embeddings.png" in card
    assert "CMMD to" in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--reference", "{real}"], "none of its classes ['renard', 'dog2', 'x'] is one of ours"),
        (["--reference", "{real}", "--label-map", "renard=wolf"], "['wolf'] are not classes of the dataset"),
        (["--reference", "{real}", "--reference-split", "test"], "has no split 'test'"),
        (["--label-map", "a=b"], "--label-map and --reference-split describe a --reference"),
    ],
)
def test_bad_reference_fails_before_scoring(smoke_dir: Path, tmp_path: Path, capsys, args: list[str], expected: str):
    real = reference_copy(smoke_dir, tmp_path / "real", ["renard", "dog2", "x"])
    args = [a.format(real=real) for a in args]
    out = tmp_path / "o"
    models = ["--clip-model", "tiny-random", "--resnet50-weights", "tiny-random"]  # models are checked first (exit 4)
    assert evaluate([str(smoke_dir), "--output-dir", str(out), *models, *args]) == 2
    assert expected in capsys.readouterr().err
    assert not (out / "data").exists() or not any((out / "data").iterdir())  # nothing scored


def test_build_with_a_reference_and_without_embeddings(smoke_dir: Path, tmp_path: Path):
    """``quality.reference`` gives the build's summary and card a CMMD; ``scoring.clip.embeddings: false``
    leaves every other column and every image byte as they were."""
    real = reference_copy(smoke_dir, tmp_path / "real", ["fox", "dog", "여우"])
    recipe = yaml.safe_load((ROOT / "recipes" / "smoke.yaml").read_text(encoding="utf-8"))
    recipe["quality"] = {"reference": str(real)}
    out = tmp_path / "with-reference"
    shutil.copytree(smoke_dir / ".synthdata", out / ".synthdata")  # the smoke shards: only the export runs again
    build_here(
        str(write_recipe(tmp_path, yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False))),
        "--output-dir",
        str(out),
    )
    summary = json.loads((out / "summary.json").read_text())
    cmmd = {(c["split"], c["class_name"]): c["cmmd"] for c in summary["classes"]}
    assert summary["cmmd"]["reference"] == str(real) and cmmd[("train", "fox")] == pytest.approx(0, abs=1e-3)
    assert cmmd[("test", "fox")] > 0
    assert "CMMD" in (out / "README.md").read_text(encoding="utf-8")

    recipe = yaml.safe_load((ROOT / "recipes" / "smoke.yaml").read_text(encoding="utf-8"))
    recipe["scoring"]["clip"]["embeddings"] = False
    plain = tmp_path / "plain"
    build_here(
        str(write_recipe(tmp_path, yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), "p.yaml")),
        "--output-dir",
        str(plain),
    )
    before = datasets.load_dataset(str(smoke_dir)).cast_column("image", datasets.Image(decode=False))
    after = datasets.load_dataset(str(plain)).cast_column("image", datasets.Image(decode=False))
    for split in before:
        assert after[split].column_names == [c for c in before[split].column_names if c != "clip_embedding"]
        assert after[split].to_list() == before[split].remove_columns("clip_embedding").to_list()
    assert json.loads((plain / "summary.json").read_text())["duplicates"]["near"] is None  # exact only


def test_a_class_over_the_exact_search_limit_is_searched_with_the_index(smoke_dir: Path, tmp_path: Path):
    """``python -m eval --recipe`` with ``quality.exact_search_limit`` under the smoke classes' 6 images: the index
    finds what the build's exact search found, and the summary, table and card say how well it searched."""
    recipe = yaml.safe_load((ROOT / "recipes" / "smoke.yaml").read_text(encoding="utf-8"))
    recipe["quality"] = {"exact_search_limit": 5}
    out = tmp_path / "scored"
    recipe_file = write_recipe(tmp_path, yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False))
    result = run_main(evaluate, str(smoke_dir), "--output-dir", str(out), "--recipe", str(recipe_file))
    assert result.returncode == 0, result.stderr
    built, scored = (json.loads((d / "summary.json").read_text())["duplicates"] for d in (smoke_dir, out))
    assert built.pop("near_search") == {"method": "exact", "exact_search_limit": 100000}
    search = scored.pop("near_search")
    assert scored == built and scored["near"]["within_split"] > 0  # the same counts as exact search
    assert search["method"] == "faiss-ivf-flat" and list(search["classes"]) == ["fox", "dog", "여우"]
    assert search["recall"] == 1 and search["classes"]["fox"]["cells"] == 1  # 6 images: one cell, exact answers
    assert "searched approximately" in (out / "README.md").read_text(encoding="utf-8")
    assert "recall 1.000" in result.stdout
