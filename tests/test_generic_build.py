"""Classic pipeline classes of no registered family (``ChromaPipeline``; ``Flux2Pipeline``, FLUX.2 [dev]) build a
dataset through the generic plug-in, from tiny random pipelines made by the test support (not registered
families), and one of their rows is regenerated alone by plain diffusers with the same pixels."""

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

from builders.recipe import Recipe, load_recipe
from tests.helpers import (
    FAMILY_RECIPE,
    SAME_THREADS,
    build_here,
    write_recipe,
    write_tiny_chroma,
    write_tiny_flux2_dev,
)

ROW = 5  # the row regenerated alone


@pytest.fixture(scope="session")
def tiny_chroma(tmp_path_factory) -> Path:
    """The tiny random ChromaPipeline, written once per session. Read-only."""
    return write_tiny_chroma(tmp_path_factory.mktemp("tiny-chroma") / "pipeline")


@pytest.fixture(scope="session")
def tiny_flux2_dev(tmp_path_factory) -> Path:
    """The tiny random Flux2Pipeline (FLUX.2 [dev]), written once per session. Read-only."""
    return write_tiny_flux2_dev(tmp_path_factory.mktemp("tiny-flux2-dev") / "pipeline")


def build_through_generic(pipeline: Path, pipeline_class: str, tmp_path: Path, negative_prompt: str = ""):
    """Build the recipe with ``pipeline`` in-process; check that the generic plug-in ran it as ``pipeline_class``
    and that the rows load with ``datasets``. The recorded recipe and the rows' prompt, negative prompt, seed and
    image, for regenerating one."""
    out = tmp_path / "out"
    text = FAMILY_RECIPE.format(family="generic", model=pipeline, negative=negative_prompt)
    recipe_path = write_recipe(tmp_path, text)
    build_here(str(recipe_path), "--output-dir", str(out), env=SAME_THREADS)
    info = json.loads((out / "build_info.json").read_text(encoding="utf-8"))
    assert info["generator"]["family"] == pipeline_class
    recipe = load_recipe(out / "recipe.yaml")
    assert recipe.model.pipeline == pipeline_class
    assert {split: rows.num_rows for split, rows in datasets.load_dataset(str(out)).items()} == {"train": 8, "test": 4}
    files = sorted((out / "data").glob("*.parquet"))
    rows = pq.read_table(files, columns=["prompt", "negative_prompt", "seed", "image"]).to_pydict()
    assert len({image["bytes"] for image in rows["image"]}) == 12
    return recipe, rows


def regenerated_alone(pipeline: Path, recipe: Recipe, rows: dict, **call) -> np.ndarray:
    """Row ``ROW`` made again by plain diffusers from its recorded prompt, seed and the recorded settings (and the
    pipeline's own arguments, ``call``), minus the row's kept pixels."""
    from diffusers import DiffusionPipeline

    gen = recipe.generation
    alone = DiffusionPipeline.from_pretrained(pipeline)(
        prompt=rows["prompt"][ROW],
        generator=torch.Generator().manual_seed(rows["seed"][ROW]),
        num_inference_steps=gen.num_inference_steps,
        height=gen.height,
        width=gen.width,
        guidance_scale=gen.guidance_scale,
        max_sequence_length=recipe.model.max_sequence_length,
        output_type="np",
        **call,
    ).images[0]
    kept = np.asarray(Image.open(io.BytesIO(rows["image"][ROW]["bytes"]))).astype(int)
    return (alone * 255).round().astype(int) - kept


@pytest.mark.e2e
def test_a_classic_pipeline_of_no_family_builds_through_generic_and_a_row_regenerates_alone(
    tiny_chroma: Path, tmp_path: Path
):
    recipe, rows = build_through_generic(tiny_chroma, "ChromaPipeline", tmp_path, "negative_prompt: blurry")
    difference = regenerated_alone(tiny_chroma, recipe, rows, negative_prompt=rows["negative_prompt"][ROW])
    assert abs(difference).max() <= 2


@pytest.mark.e2e
def test_flux2_dev_builds_through_generic_and_a_row_regenerates_alone(tiny_flux2_dev: Path, tmp_path: Path):
    recipe, rows = build_through_generic(tiny_flux2_dev, "Flux2Pipeline", tmp_path)
    assert recipe.generation.guidance_scale == 4.0  # the default of Flux2Pipeline's call: its guidance embedding
    assert abs(regenerated_alone(tiny_flux2_dev, recipe, rows)).max() <= 2
