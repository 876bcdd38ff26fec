"""The safety checker: flagged (blacked-out) images never enter a split silently.

The tiny pipeline's checker is real (diffusers' StableDiffusionSafetyChecker on a tiny CLIP); its concept
threshold is set to the median score of a few images so that about half of all images get flagged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from synthcore.model_refs import resolve
from tests.helpers import build_here, write_recipe

pytestmark = pytest.mark.e2e  # builds, model loads or subprocesses: the end-to-end tier

RECIPE = """
name: safety
model: {{id: {model}, safety_checker: true, on_flagged: {policy}, max_regenerations: 2}}
generation: {{num_inference_steps: 2, height: 32, width: 32, batch_size: 4, images_per_prompt: 1}}
classes:
  fox: {{prompts: [a fox, a red fox]}}
  dog: {{prompts: [a dog]}}
splits: {{train: 6}}
scoring: {{clip: {{enabled: false}}, resnet50: {{enabled: false}}}}
"""


@pytest.fixture(scope="module")
def half_flagging_model(tmp_path_factory) -> Path:
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance

    model = tmp_path_factory.mktemp("models") / "sd"
    shutil.copytree(resolve("tiny-random", "sd"), model)
    pipe = StableDiffusionPipeline.from_pretrained(model)
    with torch.no_grad():
        images = pipe(
            ["a fox"] * 8,
            num_inference_steps=2,
            height=32,
            width=32,
            output_type="pil",
            generator=[torch.Generator().manual_seed(i) for i in range(8)],
        ).images
        checker = pipe.safety_checker
        clip_input = pipe.feature_extractor(images, return_tensors="pt").pixel_values
        scores = cosine_distance(
            checker.visual_projection(checker.vision_model(clip_input)[1]), checker.concept_embeds
        )[:, 0]
        checker.concept_embeds_weights.fill_(scores.median().item())
    checker.save_pretrained(model / "safety_checker")
    return model


def rows(out: Path) -> dict[str, list]:
    table = pq.read_table(
        sorted((out / "data").glob("*.parquet")),
        columns=["id", "prompt", "negative_prompt", "seed", "safety_regenerations", "image"],
    )
    return table.to_pydict()


def test_flagged_images_are_regenerated_with_a_recorded_seed(half_flagging_model: Path, tmp_path: Path):
    import io

    from diffusers import StableDiffusionPipeline
    from PIL import Image

    recipe = write_recipe(tmp_path, RECIPE.format(model=half_flagging_model, policy="regenerate"))
    result = build_here(str(recipe), "--output-dir", str(tmp_path / "out"))
    got = rows(tmp_path / "out")
    assert got["id"], "some images must survive the checker"
    regenerated = [i for i, n in enumerate(got["safety_regenerations"]) if n > 0]
    assert regenerated, "the half-flagging checker must have fired"
    dropped = int(result.stdout.split(" dropped by the safety checker")[0].split()[-1])
    assert len(got["id"]) + dropped == 12
    for image in got["image"]:
        assert np.asarray(Image.open(io.BytesIO(image["bytes"]))).any(), "no blacked-out image may be kept"

    pipe = StableDiffusionPipeline.from_pretrained(
        half_flagging_model, safety_checker=None, requires_safety_checker=False
    )
    i = regenerated[0]
    alone = pipe(
        got["prompt"][i],
        negative_prompt=got["negative_prompt"][i],
        num_inference_steps=2,
        height=32,
        width=32,
        generator=torch.Generator().manual_seed(got["seed"][i]),
        output_type="np",
    ).images[0]
    kept = np.asarray(Image.open(io.BytesIO(got["image"][i]["bytes"]))).astype(int)
    assert np.abs((alone * 255).round().astype(int) - kept).max() <= 2, "the recorded seed regenerates the image alone"


def test_flagged_images_can_be_dropped_and_are_counted(half_flagging_model: Path, tmp_path: Path):
    """One image per shard, so some shards lose every row: they must not become empty files in data/."""
    text = RECIPE.format(model=half_flagging_model, policy="drop").replace("batch_size: 4", "batch_size: 1")
    recipe = write_recipe(tmp_path, text + "output: {shard_size: 1}\n")
    result = build_here(str(recipe), "--output-dir", str(tmp_path / "out"))
    got = rows(tmp_path / "out")
    dropped = int(result.stdout.split(" dropped by the safety checker")[0].split()[-1])
    assert 0 < dropped < 12 and len(got["id"]) == 12 - dropped
    assert set(got["safety_regenerations"]) == {0}
    info = json.loads((tmp_path / "out" / "build_info.json").read_text())
    assert len(info["safety_dropped"]) == dropped and not set(info["safety_dropped"]) & set(got["id"])
    train = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert train.num_rows == 12 - dropped and len(list((tmp_path / "out" / "data").iterdir())) == 12 - dropped
