"""``python -m eval``: scoring an existing dataset adds the columns and leaves images and labels as they were."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from eval.standalone import main
from tests.helpers import ROOT, SCORE_FEATURES

pytestmark = pytest.mark.e2e  # builds, model loads or subprocesses: the end-to-end tier


def raw(path: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(path)).cast_column("image", datasets.Image(decode=False))


def test_rescoring_a_build_without_its_scores_gives_them_back(smoke_dir: Path, tmp_path: Path):
    plain = tmp_path / "plain"
    smoke = raw(smoke_dir)
    for split, ds in smoke.items():
        ds.remove_columns(list(SCORE_FEATURES)).to_parquet(str(plain / "data" / f"{split}-00000-of-00001.parquet"))

    out = tmp_path / "scored"
    assert (
        main(
            [
                str(plain),
                "--output-dir",
                str(out),
                "--recipe",
                str(ROOT / "recipes" / "smoke.yaml"),
                "--batch-size",
                "5",
                "--device",
                "cpu",
            ]
        )
        == 0
    )

    scored = raw(out)
    assert list(scored) == list(smoke)
    for split in smoke:
        assert scored[split].column_names == [c for c in smoke[split].column_names if c not in SCORE_FEATURES] + list(
            SCORE_FEATURES
        )
        assert [x["bytes"] for x in scored[split]["image"]] == [x["bytes"] for x in smoke[split]["image"]]
        assert (
            scored[split]["label"][:] == smoke[split]["label"][:]
            and scored[split].features["label"] == smoke[split].features["label"]
        )
        for column in ("clip_probs", "clip_true_prob", "clip_score", "clip_embedding", "resnet50_top5_probs"):
            assert np.allclose(np.array(scored[split][column][:]), np.array(smoke[split][column][:]), atol=1e-4), column
        for column in ("clip_pred", "resnet50_top5_labels", "resnet50_match"):
            assert scored[split][column][:] == smoke[split][column][:], column
    assert json.loads((out / "summary.json").read_text())["classes"][0]["generated"] == 4
    assert "pretty_name: plain (scored)" in (out / "README.md").read_text(encoding="utf-8")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_of_any_size_and_mode_from_the_command_line(tmp_path: Path):
    images = [
        Image.new("L", (20, 30), 128),
        Image.new("RGBA", (64, 48), (200, 10, 10, 128)),
        Image.new("P", (33, 33)),
        Image.new("RGB", (40, 16), (0, 90, 0)),
    ]
    source = tmp_path / "real"
    features = datasets.Features({"img": datasets.Image(), "kind": datasets.ClassLabel(names=["cat", "dog"])})
    data = datasets.Dataset.from_dict(
        {"img": [{"bytes": png(i), "path": None} for i in images], "kind": [0, 1, 1, 0]}, features=features
    )
    data.to_parquet(str(source / "data" / "test-00000-of-00001.parquet"))

    out = tmp_path / "scored"
    command = [
        sys.executable,
        "-m",
        "eval",
        str(source),
        "--output-dir",
        str(out),
        "--image-column",
        "img",
        "--label-column",
        "kind",
        "--clip-model",
        "tiny-random",
        "--resnet50-weights",
        "tiny-random",
        "--label-template",
        "a photo of a {label}",
        "--label-template",
        "a drawing of a {label}",
        "--batch-size",
        "3",
        "--shard-size",
        "3",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00002.parquet",
        "test-00001-of-00002.parquet",
    ]
    scored = datasets.load_dataset(str(out), split="test")
    assert scored["kind"][:] == [0, 1, 1, 0] and [i.size for i in scored["img"]] == [i.size for i in images]
    assert np.allclose(np.array(scored["clip_probs"][:]).sum(axis=1), 1, atol=1e-5)
    assert scored["resnet50_match"][:] == [None] * 4  # no recipe, so no ImageNet mapping
    assert "P(true) mean" in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--label-column", "prompt"], "column 'prompt' is Value('string'), expected a ClassLabel"),
        (["--image-column", "picture"], "has no Image column 'picture'"),
        (["--label-template", "a photo"], "must use exactly the plain field {label}"),
    ],
)
def test_bad_input_fails_clearly(smoke_dir: Path, tmp_path: Path, capsys, args: list[str], expected: str):
    assert (
        main(
            [
                str(smoke_dir),
                "--output-dir",
                str(tmp_path / "o"),
                "--clip-model",
                "tiny-random",
                "--resnet50-weights",
                "tiny-random",
                *args,
            ]
        )
        == 2
    )
    assert expected in capsys.readouterr().err
