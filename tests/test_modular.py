"""Modular pipelines (FLUX.3 image klein): the family and which recipe keys apply come from
``modular_model_index.json`` and the pipeline's blocks alone, before any weights load.

These read hand-made model directories holding only the index; the end-to-end builds with tiny random FLUX.3
pipelines are the family tests (tests/test_families.py, ``-k flux3``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builders.generators import describe, family_of, resolve_family
from builders.generators.flux3 import Flux3
from builders.recipe import RecipeError, parse_recipe

BASE, DISTILLED = "Flux3ModularPipeline", "Flux3DistilledModularPipeline"
BLOCKS = {BASE: "Flux3AutoBlocks", DISTILLED: "Flux3DistilledAutoBlocks"}


def modular_dir(root: Path, pipeline: str) -> Path:
    """A modular repo as far as the family is decided from it: its ``modular_model_index.json`` only."""
    directory = root / pipeline
    directory.mkdir()
    index = {"_class_name": pipeline, "_blocks_class_name": BLOCKS[pipeline], "_diffusers_version": "0.42.1"}
    (directory / "modular_model_index.json").write_text(json.dumps(index))
    return directory


def recipe(model: Path, generation: str = "", extra: str = "", model_extra: str = ""):
    text = f"""
name: t
model: {{id: {model}{model_extra}}}
generation: {{{generation}}}
classes:
  fox: {{prompts: [a fox]}}
splits: {{train: 2}}
{extra}
"""
    return parse_recipe(text, "r.yaml")


def problems(found) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        resolve_family(found, "r.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    "pipeline, expected",
    [(DISTILLED, (1024, 16, 0.0)), (BASE, (1024, 50, 4.0))],
)
def test_the_family_and_its_defaults_come_from_the_modular_index(pipeline: str, expected: tuple, tmp_path: Path):
    resolved = resolve_family(recipe(modular_dir(tmp_path, pipeline)))
    gen = resolved.generation
    assert (gen.height, gen.num_inference_steps, gen.guidance_scale) == expected
    assert resolved.model.pipeline == pipeline and isinstance(family_of(resolved), Flux3)
    assert resolved.model.max_sequence_length is None  # the pipeline's own limit applies
    info = describe(resolved)
    assert info["family"] == "FLUX.3 image klein" and info["pipeline"] == pipeline


def test_keys_the_distilled_blocks_do_not_take_are_recipe_errors_naming_key_and_pipeline(tmp_path: Path):
    found = problems(
        recipe(
            modular_dir(tmp_path, DISTILLED),
            "guidance_scale: 3.5, height: 1000",
            extra="negative_prompt: blurry",
            model_extra=", loras: [{id: some/lora}]",
        )
    )
    assert [p.split(":")[0] for p in found] == [
        "generation.height",
        "negative_prompt",
        "generation.guidance_scale",
        "model.loras",
    ]
    assert all(DISTILLED in p for p in found[1:])


def test_the_base_blocks_take_a_negative_prompt_and_guidance(tmp_path: Path):
    resolved = resolve_family(
        recipe(modular_dir(tmp_path, BASE), "guidance_scale: 5.0", extra="negative_prompt: blurry")
    )
    assert resolved.generation.guidance_scale == 5.0
    assert "classifier-free guidance" in describe(resolved)["guidance"]


def test_a_model_index_wins_over_a_modular_one(tmp_path: Path):
    """A repo with both (a classic pipeline with a modular index added) runs as the classic pipeline it is."""
    directory = modular_dir(tmp_path, DISTILLED)
    (directory / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    assert resolve_family(recipe(directory)).model.pipeline == "FluxPipeline"


# -- any other modular text-to-image pipeline: the generic modular plug-in -------------------------------------------
def test_a_modular_class_of_no_family_runs_generically_and_other_tasks_are_refused(tmp_path: Path):
    directory = tmp_path / "z"
    directory.mkdir()
    index = {"_class_name": "ZImageModularPipeline", "_blocks_class_name": "ZImageAutoBlocks"}
    (directory / "modular_model_index.json").write_text(json.dumps(index))
    resolved = resolve_family(recipe(directory))
    gen = resolved.generation
    assert (gen.height, gen.num_inference_steps, gen.guidance_scale) == (1024, 8, 0.0)  # its guider is disabled
    assert family_of(resolved).label == "ZImageModularPipeline"
    wan = tmp_path / "wan"
    wan.mkdir()
    (wan / "modular_model_index.json").write_text(json.dumps({"_class_name": "WanModularPipeline"}))
    (found,) = problems(recipe(wan))
    assert found.startswith("model.id:") and "WanModularPipeline" in found and "no text-to-image pipeline" in found


@pytest.fixture(scope="module")
def z_image_modular(tmp_path_factory) -> Path:
    """The tiny random Z-Image pipeline saved as a modular repo (``ZImageModularPipeline``, no family of its own)."""
    from diffusers import ModularPipeline

    from builders.generators.tiny import tiny_family_dir

    pipe = ModularPipeline.from_pretrained(str(tiny_family_dir("z-image")))
    pipe.load_components()
    directory = tmp_path_factory.mktemp("z-image-modular") / "repo"
    pipe.save_pretrained(str(directory), overwrite_modular_index=True)
    return directory


@pytest.mark.e2e
def test_a_generic_modular_build_regenerates_a_row_alone_with_diffusers(z_image_modular: Path, tmp_path: Path):
    import io

    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from diffusers import ModularPipeline
    from PIL import Image

    from tests.helpers import SAME_THREADS, run_build, write_recipe

    text = f"""
name: z-modular
model: {{id: {z_image_modular}, safety_checker: false}}
generation: {{num_inference_steps: 2, height: 32, width: 32, batch_size: 2, images_per_prompt: 1}}
classes:
  fox: {{prompts: [a red fox, a fox in snow]}}
splits: {{train: 3}}
scoring: {{clip: {{model: tiny-random}}, resnet50: {{enabled: false}}}}
"""
    out = tmp_path / "out"
    run_build(str(write_recipe(tmp_path, text)), "--output-dir", str(out), env=SAME_THREADS)
    info = json.loads((out / "build_info.json").read_text(encoding="utf-8"))
    assert info["generator"]["pipeline"] == "ZImageModularPipeline"
    rows = pq.read_table(sorted((out / "data").glob("*.parquet")), columns=["prompt", "seed", "image"]).to_pydict()
    assert len(rows["seed"]) == 3 and len({image["bytes"] for image in rows["image"]}) == 3
    pipe = ModularPipeline.from_pretrained(str(z_image_modular))
    pipe.load_components()
    alone = pipe(
        prompt=rows["prompt"][2],
        generator=torch.Generator().manual_seed(rows["seed"][2]),
        num_inference_steps=2,
        height=32,
        width=32,
        output_type="np",
        output="images",
    )[0]
    kept = np.asarray(Image.open(io.BytesIO(rows["image"][2]["bytes"]))).astype(int)
    assert abs((alone * 255).round().astype(int) - kept).max() <= 2


def test_the_availability_check_skips_what_the_build_does_not_load(tmp_path: Path):
    """The prompt upsampler, listed in the index but taken out of the blocks, is neither required nor downloaded;
    a chat template (``*.jinja``) is."""
    directory = modular_dir(tmp_path, DISTILLED)
    index = json.loads((directory / "modular_model_index.json").read_text())
    spec = {"pretrained_model_name_or_path": "black-forest-labs/flux-3-image-klein", "subfolder": "prompt_upsampler"}
    index["prompt_upsampler"] = ["transformers", "Qwen3_5ForConditionalGeneration", spec]
    (directory / "modular_model_index.json").write_text(json.dumps(index))
    resolved = resolve_family(recipe(directory))
    (need,) = family_of(resolved).pipeline_needs(resolved)
    assert need.skip == ("prompt_upsampler",) and need.problem() is None
    assert "prompt_upsampler/*" in need.exclude and "*/*.jinja" in need.include
