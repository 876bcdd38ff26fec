"""A classic pipeline class of no registered family (``ChromaPipeline``) builds a dataset through the generic
plug-in, from a tiny random pipeline made by the test support (not a registered family), and one of its rows is
regenerated alone by plain diffusers with the same pixels."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from builders.recipe import load_recipe
from tests.helpers import SAME_THREADS, build_here, write_recipe, write_tiny_chroma

RECIPE = """
name: generic-chroma
model: {{id: {model}, safety_checker: false}}
generation: {{num_inference_steps: 2, height: 32, width: 32, batch_size: 2, images_per_prompt: 1}}
negative_prompt: blurry
classes:
  fox: {{prompts: [a red fox, 수채화 여우]}}
  dog: {{prompts: [a dog]}}
splits: {{train: 2, test: 1}}
output: {{shard_size: 2}}
scoring: {{clip: {{model: tiny-random}}, resnet50: {{enabled: false}}}}
"""


@pytest.fixture(scope="session")
def tiny_chroma(tmp_path_factory) -> Path:
    """The tiny random ChromaPipeline, written once per session. Read-only."""
    return write_tiny_chroma(tmp_path_factory.mktemp("tiny-chroma") / "pipeline")


@pytest.mark.e2e
def test_a_classic_pipeline_of_no_family_builds_through_generic_and_a_row_regenerates_alone(
    tiny_chroma: Path, tmp_path: Path
):
    from diffusers import DiffusionPipeline

    recipe_path, out = write_recipe(tmp_path, RECIPE.format(model=tiny_chroma)), tmp_path / "out"
    build_here(str(recipe_path), "--output-dir", str(out), env=SAME_THREADS)
    info = json.loads((out / "build_info.json").read_text(encoding="utf-8"))
    assert info["generator"]["family"] == "ChromaPipeline"
    recipe = load_recipe(out / "recipe.yaml")
    assert recipe.model.pipeline == "ChromaPipeline"
    assert {split: rows.num_rows for split, rows in datasets.load_dataset(str(out)).items()} == {"train": 4, "test": 2}

    files = sorted((out / "data").glob("*.parquet"))
    rows = pq.read_table(files, columns=["prompt", "negative_prompt", "seed", "image"]).to_pydict()
    assert len({image["bytes"] for image in rows["image"]}) == 6
    gen, row = recipe.generation, 5
    alone = DiffusionPipeline.from_pretrained(tiny_chroma)(
        prompt=rows["prompt"][row],
        negative_prompt=rows["negative_prompt"][row],
        generator=torch.Generator().manual_seed(rows["seed"][row]),
        num_inference_steps=gen.num_inference_steps,
        height=gen.height,
        width=gen.width,
        guidance_scale=gen.guidance_scale,
        max_sequence_length=recipe.model.max_sequence_length,
        output_type="np",
    ).images[0]
    kept = np.asarray(Image.open(io.BytesIO(rows["image"][row]["bytes"]))).astype(int)
    assert abs((alone * 255).round().astype(int) - kept).max() <= 2
