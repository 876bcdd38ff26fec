"""Numbers and addresses at their edges: every float that reaches the GPU or the optimizer is bounded in its schema
and refused with the key and the bound, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from builders.generators.tiny import tiny_family_dir
from builders.limits import MAX_GUIDANCE_SCALE
from builders.recipe import LoraSettings, RecipeError, parse_recipe
from synthcore.availability import lora_needs
from synthcore.tiny import tiny_models_dir
from training.config import parse_config

MINIMAL = "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1}\n"


def recipe_problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text, "r.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    "extra, expected",
    [
        (
            "generation: {guidance_scale: 1.0e+300}",
            "generation.guidance_scale: Input should be less than or equal to 100",
        ),
        ("generation: {guidance_scale: 100.5}", "generation.guidance_scale: Input should be less than or equal to 100"),
        (
            "generation: {guidance_scale: [3, 1.0e+30]}",
            "generation.guidance_scale: value [1]: Input should be less than",
        ),
        ("model: {id: tiny-random, loras: [{id: x, scale: 1.0e+30}]}", "model.loras[0].scale: Input should be less"),
        ("hub: {upload_interval: 1.0e+300}", "hub.upload_interval: Input should be less than or equal to 86400"),
        ("prompt_partition: {train: 1.0e+308}", "prompt_partition.train: Input should be less than or equal to"),
    ],
)
def test_absurd_floats_in_a_recipe_are_refused_with_their_bound(extra: str, expected: str):
    found = recipe_problems(MINIMAL + extra + "\n")
    assert any(problem.startswith(expected) for problem in found), found


def test_the_largest_guidance_is_accepted():
    recipe = parse_recipe(MINIMAL + f"generation: {{guidance_scale: {MAX_GUIDANCE_SCALE}}}\n", "r.yaml")
    assert recipe.generation.guidance_scale == MAX_GUIDANCE_SCALE


@pytest.mark.parametrize(
    "option, expected",
    [
        (["--lr", "inf"], "finite number"),
        (["--lr", "1e30"], "less than or equal to 10"),
        (["--momentum", "5"], "less than or equal to 1"),
        (["--min-score", "clip_score=nan"], "finite number"),
        (["--min-true-class-prob=-inf"], "finite number"),
    ],
)
def test_absurd_training_numbers_are_refused(option: list[str], expected: str):
    with pytest.raises(ValidationError, match=expected):
        parse_config(["--dataset", "d", "--output-dir", "o", *option])


# -- a LoRA for another architecture: exit 4 before any model loads ------------------------------------------------
def save_real_lora(pipeline_dir: Path, out: Path) -> Path:
    """A LoRA of the pipeline's UNet attention projections, saved as diffusers' training scripts save one."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(pipeline_dir / "unet")
    unet.add_adapter(LoraConfig(r=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=get_peft_model_state_dict(unet))
    return out


def test_a_lora_for_another_architecture_is_exit_4_before_loading(tmp_path: Path, capsys):
    from builders.cli import main

    sd_lora = save_real_lora(tiny_models_dir() / "sd", tmp_path / "sd-lora")
    sdxl_lora = save_real_lora(tiny_family_dir("sdxl"), tmp_path / "sdxl-lora")
    assert [need.problem() for need in lora_needs("model.loras", [LoraSettings(id=str(sd_lora))], "tiny-random")] == [
        None
    ]
    extra = f"model: {{id: tiny-random, safety_checker: false, loras: [{{id: {sdxl_lora}}}]}}\n"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(MINIMAL + extra + "scoring: {clip: {enabled: false}, resnet50: {enabled: false}}\n")
    assert main([str(recipe), "--output-dir", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err
    assert (
        f"model.loras[0].id: the LoRA adapter '{sdxl_lora}': pytorch_lora_weights.safetensors is not a LoRA for " in err
    )
    assert "'tiny-random': no such module in the unet: " in err and "other sizes: " in err
    assert not (tmp_path / "out").exists()
