"""Qwen-Image 2.1 (``QwenImage21Pipeline``): its defaults follow the model's fixed sampling schedule
(``sample_sigmas``), its guidance is ``true_cfg_scale`` against the negative prompt, its sizes are multiples of 32,
and a recipe asking for another number of steps than the schedule has gets that many (the pipeline would ignore
them). Its RGBA images become RGB over white, and its forward, which reads its masks' values, is counted on
shapes. Fast, but the e2e test, which loads the tiny random pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from builders.generators import family_of, resolve_family
from builders.generators.base import opaque_rgb
from builders.generators.known import KNOWN_MODELS
from builders.generators.qwen_image21 import QwenImage21
from builders.plan import Job
from builders.recipe import RecipeError, parse_recipe

TURBO_SIGMAS = list(KNOWN_MODELS["Qwen/Qwen-Image-2.1-Turbo"].index["sample_sigmas"])
RECIPE = """
name: t
model: {{id: {model}, safety_checker: false{model_extra}}}
{generation}
classes:
  fox: {{prompts: [a fox]}}
splits: {{train: 2}}
"""


def model_dir(root: Path, name: str, **index) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "model_index.json").write_text(json.dumps({"_class_name": "QwenImage21Pipeline", **index}))
    return directory


def recipe(model: Path, generation: str = "", model_extra: str = ""):
    return parse_recipe(RECIPE.format(model=model, generation=generation, model_extra=model_extra), "r.yaml")


def job(guidance_scale: float) -> Job:
    return Job("j", "train", 0, "fox", 0, "a fox", "blurry", guidance_scale, 1)


def test_the_steps_follow_the_model_s_sample_sigmas_and_guidance_is_off(tmp_path: Path):
    turbo = model_dir(tmp_path, "turbo", sample_sigmas=TURBO_SIGMAS)
    base = model_dir(tmp_path, "base")
    for directory, steps in ((turbo, 8), (base, 40)):
        resolved = resolve_family(recipe(directory))
        gen = resolved.generation
        assert (gen.height, gen.width, gen.num_inference_steps, gen.guidance_scale) == (1024, 1024, steps, 1.0)
        assert resolved.model.pipeline == "QwenImage21Pipeline" and resolved.model.max_sequence_length is None
    family = family_of(resolve_family(recipe(base)))
    assert isinstance(family, QwenImage21)
    assert family.guidance_arguments(4.0) == {"true_cfg_scale": 4.0}
    assert (family.passes(1.0), family.passes(4.0)) == (1, 2)


def test_sizes_are_multiples_of_32_and_it_takes_no_sequence_length(tmp_path: Path):
    bad = recipe(model_dir(tmp_path, "base"), "generation: {height: 1008}", ", max_sequence_length: 256")
    with pytest.raises(RecipeError) as caught:
        resolve_family(bad, "r.yaml")
    keys = [problem.split(":")[0] for problem in caught.value.problems]
    assert keys == ["generation.height", "model.max_sequence_length"]
    assert "multiple of 32" in caught.value.problems[0]


def test_negative_prompts_are_passed_only_where_guidance_runs(tmp_path: Path):
    resolved = resolve_family(recipe(model_dir(tmp_path, "base")))
    family = family_of(resolved)
    assert "negative_prompt" not in family.call_arguments(resolved, [job(1.0)])
    assert family.call_arguments(resolved, [job(4.0)])["negative_prompt"] == ["blurry"]


def test_rgba_images_are_made_rgb_over_white():
    rgba = torch.tensor([0.2, 0.4, 0.6, 0.5]).view(1, 4, 1, 1)
    assert torch.allclose(opaque_rgb(rgba).flatten(), torch.tensor([0.6, 0.7, 0.8]))
    rgb = torch.rand(2, 3, 4, 4)
    assert opaque_rgb(rgb) is rgb


@pytest.mark.e2e
def test_other_steps_than_the_fixed_schedule_run_the_pipeline_s_even_schedule(tmp_path: Path):
    from diffusers import QwenImage21Pipeline

    from builders.generators.tiny import tiny_family_dir

    directory = tiny_family_dir("qwen-image-2.1")
    pipe = QwenImage21Pipeline.from_pretrained(directory)
    pipe.set_progress_bar_config(disable=True)
    family = QwenImage21()
    kept, changed = recipe(directory, "generation: {num_inference_steps: 2}"), recipe(directory)
    changed = changed.model_copy(
        update={"generation": changed.generation.model_copy(update={"num_inference_steps": 3})}
    )
    pipe.register_to_config(sample_sigmas=[1.0, 0.5])
    family.prepare(pipe, kept)
    assert pipe.config.sample_sigmas == [1.0, 0.5], "two steps: the model's own schedule runs"

    def image(**arguments) -> np.ndarray:
        generator = torch.Generator().manual_seed(3)
        return pipe("a fox", height=32, width=32, generator=generator, output_type="np", **arguments).images[0]

    family.prepare(pipe, changed)
    assert pipe.config.sample_sigmas is None
    expected = image(num_inference_steps=1, sigmas=list(np.linspace(1.0, 1 / 3, 3)))
    assert np.array_equal(image(num_inference_steps=3), expected), "three even steps, not the two fixed ones"


def test_shapes_only_counts_what_the_meta_device_counts_and_traces_qwen_s_forward():
    from benchmarks.families import architectures, denoiser_gflops

    def spec(family: str, reads_values: bool, **config) -> dict:
        found = architectures()[family]["denoiser"]
        return {**found, "config": {**found["config"], **config}, "reads_values": reads_values}

    klein = {"num_layers": 1, "num_single_layers": 1}
    assert denoiser_gflops(spec("flux2-klein", True, **klein), 256) == denoiser_gflops(
        spec("flux2-klein", False, **klein), 256
    )
    one, two, three = (denoiser_gflops(spec("qwen-image-2.1", True, num_layers=n), 256) for n in (1, 2, 3))
    assert one > 0 and two - one == pytest.approx(three - two), "every block of the forward is counted alike"
