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
