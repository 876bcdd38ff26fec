"""The generic generator: any diffusers text-to-image pipeline class runs, with the recipe keys its ``__call__``
takes, checked before any weights load; other pipeline classes stay refused. Fast: only model_index.json and
configs are read (the pipeline class is imported, not loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builders.cli import main
from builders.generators import family_of, generator_of_class, resolve_family
from builders.generators.generic import Generic, is_text_to_image
from builders.recipe import RecipeError, parse_recipe
from tests.helpers import write_recipe

RECIPE = """
name: t
model: {{id: {model}, safety_checker: false{model_extra}}}
{generation}
classes:
  fox: {{prompts: [a fox]{class_extra}}}
splits: {{train: 2}}
{extra}
"""


def model_dir(root: Path, pipeline: str, name: str | None = None, **index) -> Path:
    directory = root / (name or pipeline)
    directory.mkdir(parents=True)
    (directory / "model_index.json").write_text(json.dumps({"_class_name": pipeline, **index}))
    return directory


def recipe_text(model: Path, generation: str = "", model_extra: str = "", class_extra: str = "", extra: str = ""):
    return RECIPE.format(
        model=model, generation=generation, model_extra=model_extra, class_extra=class_extra, extra=extra
    )


def problems_of(text: str) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        resolve_family(parse_recipe(text, "r.yaml"), "r.yaml")
    return caught.value.problems


def test_a_text_to_image_class_of_no_family_runs_with_its_own_call_defaults(tmp_path: Path):
    resolved = resolve_family(parse_recipe(recipe_text(model_dir(tmp_path, "ChromaPipeline")), "r.yaml"))
    gen = resolved.generation
    assert (gen.height, gen.width, gen.num_inference_steps, gen.guidance_scale) == (1024, 1024, 35, 5.0)
    assert resolved.model.pipeline == "ChromaPipeline" and resolved.model.max_sequence_length == 512
    family = family_of(resolved)
    assert isinstance(family, Generic) and family.label == "ChromaPipeline" and family.flops is None
    assert family.guidance_arguments(5.0) == {"guidance_scale": 5.0} and family.passes(5.0) == 2


def test_a_key_the_pipeline_does_not_take_is_a_recipe_error_naming_key_and_pipeline(tmp_path: Path):
    found = problems_of(
        recipe_text(
            model_dir(tmp_path, "Flux2KleinKVPipeline"),
            "generation: {guidance_scale: 3.5}",
            class_extra=", negative_prompt: blurry",
            extra="negative_prompt: lowres",
        )
    )
    assert len(found) == 3, found
    assert found[0].startswith("negative_prompt: Flux2KleinKVPipeline takes no negative prompt")
    assert found[1].startswith("classes.fox.negative_prompt: Flux2KleinKVPipeline takes no negative prompt")
    assert found[2].startswith("generation.guidance_scale: none: Flux2KleinKVPipeline (Flux2KleinKVPipeline) takes no")


def test_a_sequence_length_needs_the_call_to_take_one(tmp_path: Path):
    (found,) = problems_of(
        recipe_text(model_dir(tmp_path, "ErnieImagePipeline"), model_extra=", max_sequence_length: 77")
    )
    assert found.startswith("model.max_sequence_length: ErnieImagePipeline has no T5-like text encoder to limit")


def test_guidance_goes_to_true_cfg_scale_where_the_call_has_it():
    qwen = generator_of_class("QwenImagePipeline")
    assert qwen.guidance_parameter == "true_cfg_scale" and qwen.guidance_arguments(4.0) == {"true_cfg_scale": 4.0}


@pytest.mark.parametrize(
    "pipeline",
    [
        "StableDiffusionImg2ImgPipeline",
        "WanPipeline",
        "QwenImageEditPipeline",
        "NoSuchPipeline",
        "LattePipeline",  # video: its call takes a video_length
        "BlipDiffusionPipeline",  # requires a reference image and subject categories
        "StableDiffusionAttendAndExcitePipeline",  # requires the prompt's token indices
        "StableDiffusionLDM3DPipeline",  # RGB and depth
    ],
)
def test_a_class_that_is_not_text_to_image_stays_refused_with_the_known_ones(pipeline: str, tmp_path: Path):
    assert not is_text_to_image(pipeline)
    (found,) = problems_of(recipe_text(model_dir(tmp_path, pipeline)))
    assert found.startswith("model.id:") and f"is a {pipeline}, which synthdata cannot run" in found
    assert "ZImagePipeline (Z-Image)" in found and "StableDiffusionXLPipeline" in found


def test_the_dry_run_of_a_generic_pipeline_says_there_is_no_estimate(tmp_path: Path, capsys):
    recipe = write_recipe(tmp_path, recipe_text(model_dir(tmp_path, "CogView4Pipeline")))
    assert main([str(recipe), "--dry-run", "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "compute: no estimate (no FLOPs counted for CogView4Pipeline's architecture)" in out
    assert "estimated GPU time" not in out


def test_z_image_turbo_is_told_by_its_id_and_runs_one_pass_without_guidance(tmp_path: Path):
    turbo = model_dir(tmp_path, "ZImagePipeline", "Z-Image-Turbo")
    resolved = resolve_family(parse_recipe(recipe_text(turbo), "r.yaml"))
    gen = resolved.generation
    assert (gen.height, gen.num_inference_steps, gen.guidance_scale) == (1024, 9, 0.0)
    family = family_of(resolved)
    assert family.passes(0.0) == 1 and family.passes(0.5) == 2, "Z-Image's guidance runs above 0"


def test_flux2_klein_defaults_follow_is_distilled_and_the_distilled_take_no_guidance(tmp_path: Path):
    distilled = model_dir(tmp_path, "Flux2KleinPipeline", "klein", is_distilled=True)
    base = model_dir(tmp_path, "Flux2KleinPipeline", "klein-base", is_distilled=False)
    for directory, expected in ((distilled, (4, 1.0)), (base, (50, 4.0))):
        gen = resolve_family(parse_recipe(recipe_text(directory), "r.yaml")).generation
        assert (gen.height, gen.num_inference_steps, gen.guidance_scale) == (1024, *expected)
    found = problems_of(recipe_text(distilled, "generation: {guidance_scale: 3.5}", extra="negative_prompt: lowres"))
    assert [problem.split(":")[0] for problem in found] == ["negative_prompt", "generation.guidance_scale"]
    assert "this FLUX.2 [klein] model is step-distilled" in found[1] and "set at most 1" in found[1]
    assert family_of(resolve_family(parse_recipe(recipe_text(base), "r.yaml"))).passes(4.0) == 2
