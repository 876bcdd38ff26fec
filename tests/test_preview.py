"""``build.py RECIPE --preview N``: the first images of every class, made as the full build makes them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import yaml

from tests.helpers import build_here

SMALL = ["splits.train=3", "splits.test=2"]  # 3 classes: 15 images in all


@pytest.mark.e2e
def test_a_preview_shows_the_very_images_the_full_build_then_makes(tmp_path: Path):
    import datasets

    out = tmp_path / "smoke"
    previewed = build_here("recipes/smoke.yaml", *SMALL, "--output-dir", str(out), "--preview", "1")
    preview = out / "preview"
    report = json.loads((preview / "preview.json").read_text(encoding="utf-8"))
    rows = report["rows"]
    # batch_size 2: each class's first image, rounded up to its whole first batch
    assert sorted(row["id"] for row in rows) == sorted(
        f"train/{name}/{i:06d}" for name in ("fox", "dog", "여우") for i in range(2)
    )
    assert all(0 <= row["scores"]["clip_true_prob"] <= 1 for row in rows)
    assert PIL.Image.open(preview / "preview.png").size[0] > 0
    assert not (out / "data").exists() and not (out / "recipe.yaml").exists()  # a preview publishes no dataset
    assert str(preview / "preview.png") in previewed.stdout and "per image" in previewed.stdout

    build_here("recipes/smoke.yaml", *SMALL, "--output-dir", str(out))
    assert yaml.safe_load((out / "recipe.yaml").read_text(encoding="utf-8"))["splits"] == {"train": 3, "test": 2}
    built = datasets.load_dataset("parquet", data_files=str(out / "data" / "train-*.parquet"), split="train")
    by_id = {row["id"]: row for row in built.cast_column("image", datasets.Image(decode=False))}
    for row in rows:
        stored = by_id[row["id"]]
        assert (stored["seed"], stored["prompt"]) == (row["seed"], row["prompt"])
        made = np.asarray(PIL.Image.open(preview / row["image"]))
        assert np.array_equal(made, np.asarray(PIL.Image.open(io.BytesIO(stored["image"]["bytes"]))))
    assert json.loads((preview / "preview.json").read_text(encoding="utf-8")) == report  # left as it was
