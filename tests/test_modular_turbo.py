"""The Turbo checkpoints diffusers ships as modular pipelines of no family of their own, run by the generic modular
plug-in: Qwen-Image 2.1 Turbo (``QwenImage21TurboModularPipeline``) and Krea 2 Turbo (``Krea2TurboModularPipeline``).
Qwen's blocks sample the schedule its ``modular_model_index.json`` fixes (``sample_sigmas``) whatever
``num_inference_steps`` says: the steps default to that schedule's length, and a recipe asking for another number
runs that many evenly spaced steps, as the classic plug-in does.

The e2e tests build each from tiny random components (those of the family's classic tiny pipeline) saved as a
modular repo, and regenerate one row alone with a plain ``ModularPipeline``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from builders.generators import family_of, generator_of_class, resolve_family
from builders.generators.modular import GenericModular
from builders.recipe import RecipeError, load_recipe, parse_recipe

QWEN_TURBO, BLOCKS = "QwenImage21TurboModularPipeline", "QwenImage21TurboAutoBlocks"
KREA2_TURBO = "Krea2TurboModularPipeline"
TINY_SIGMAS = [1.0, 0.5]  # the tiny repo's fixed schedule: two steps (the real Turbo's has eight)
RECIPE = """
name: qwen-turbo-modular
model: {{id: {model}, safety_checker: false}}
generation: {{{generation}}}
classes:
  fox: {{prompts: [a red fox, a fox in snow]}}
  dog: {{prompts: [a small dog]}}
splits: {{train: 3}}
scoring: {{clip: {{model: tiny-random}}, resnet50: {{enabled: false}}}}
"""


def recipe(model: Path, generation: str = ""):
    return parse_recipe(RECIPE.format(model=model, generation=generation), "r.yaml")


def index_only(root: Path, name: str, **index) -> Path:
    """A Turbo modular repo as far as the family and its defaults are decided: its index only."""
    directory = root / name
    directory.mkdir()
    (directory / "modular_model_index.json").write_text(
        json.dumps({"_class_name": QWEN_TURBO, "_blocks_class_name": BLOCKS, **index})
    )
    return directory


def test_the_turbo_s_fixed_schedule_sets_its_default_steps(tmp_path: Path):
    assert all(isinstance(generator_of_class(name), GenericModular) for name in (QWEN_TURBO, KREA2_TURBO))
    fixed = resolve_family(recipe(index_only(tmp_path, "fixed", sample_sigmas=[1.0, 0.75, 0.5])))
    assert fixed.generation.num_inference_steps == 3 and fixed.generation.guidance_scale == 0.0
    free = resolve_family(recipe(index_only(tmp_path, "free")))
    assert free.generation.num_inference_steps == 8  # the blocks' own default, where no schedule is fixed


def test_qwen_s_sizes_are_multiples_of_32_as_its_blocks_round_them(tmp_path: Path):
    """Its blocks round a size down to a multiple of 32 (the 16x VAE's 2x2 token groups): 48 would make 32 px."""
    with pytest.raises(RecipeError) as caught:
        resolve_family(recipe(index_only(tmp_path, "q", sample_sigmas=[1.0]), "height: 48"), "r.yaml")
    (problem,) = caught.value.problems
    assert problem.startswith("generation.height:") and "multiple of 32" in problem


def qwen_turbo_modular():
    """The tiny random Qwen-Image 2.1 pipeline's components under Turbo's modular blocks, with a fixed schedule
    (``sample_sigmas`` in its index) as hf-internal-testing/tiny-qwenimage21-turbo-modular has."""
    from diffusers.modular_pipelines import QwenImage21TurboAutoBlocks

    from builders.generators.tiny import tiny_family_dir

    pipe = QwenImage21TurboAutoBlocks().init_pipeline(str(tiny_family_dir("qwen-image-2.1")))
    pipe.load_components()
    pipe.register_to_config(sample_sigmas=TINY_SIGMAS)
    return pipe


def krea2_turbo_modular():
    """Krea 2 Turbo's modular blocks over the tiny Krea 2 components, its text encoder 35 layers deep and its
    transformer fusing twelve text layers: the blocks stack the encoder's hidden states 2, 5, ..., 35."""
    from diffusers import Krea2TurboModularPipeline
    from diffusers.modular_pipelines import Krea2TurboAutoBlocks

    from builders.generators import krea2
    from synthcore.tiny import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    pipe = Krea2TurboModularPipeline(blocks=Krea2TurboAutoBlocks())
    pipe.update_components(
        scheduler=krea2.tiny_scheduler(),
        transformer=krea2.tiny_transformer(num_text_layers=12),
        vae=krea2.tiny_vae(),
        text_encoder=krea2.tiny_text_encoder(tokenizer, num_hidden_layers=35),
        tokenizer=tokenizer,
    )
    return pipe


# Each Turbo modular pipeline: its tiny random pipeline, and the recipe's steps (Qwen's: its fixed schedule's).
TURBOS = {
    QWEN_TURBO: (qwen_turbo_modular, ""),
    KREA2_TURBO: (krea2_turbo_modular, "num_inference_steps: 2, "),
}


@pytest.fixture(scope="module")
def turbo_modular(tmp_path_factory) -> Callable[[str], Path]:
    """``turbo_modular(pipeline)``: that Turbo's tiny random pipeline saved as a modular repo (seeded weights), once
    for the module."""
    from synthcore.tiny import with_seed

    saved: dict[str, Path] = {}

    def save(directory: Path, pipeline: str) -> None:
        TURBOS[pipeline][0]().save_pretrained(str(directory), overwrite_modular_index=True)

    def repo(pipeline: str) -> Path:
        if pipeline not in saved:
            saved[pipeline] = tmp_path_factory.mktemp(pipeline) / "repo"
            with_seed(partial(save, pipeline=pipeline))(saved[pipeline])
        return saved[pipeline]

    return repo


@pytest.mark.e2e
@pytest.mark.parametrize("pipeline", TURBOS)
def test_a_turbo_modular_build_regenerates_a_row_alone_with_diffusers(pipeline: str, turbo_modular, tmp_path: Path):
    import torch
    from diffusers import ModularPipeline
    from PIL import Image

    from builders.generators.base import opaque_rgb, to_uint8_hwc
    from tests.helpers import SAME_THREADS, build_here, table, write_recipe

    model = turbo_modular(pipeline)
    generation = f"{TURBOS[pipeline][1]}height: 32, width: 32, batch_size: 2, images_per_prompt: 1"
    out = tmp_path / "out"
    path = write_recipe(tmp_path, RECIPE.format(model=model, generation=generation))
    build_here(str(path), "--output-dir", str(out), env=SAME_THREADS)
    assert json.loads((out / "build_info.json").read_text(encoding="utf-8"))["generator"]["pipeline"] == pipeline
    recorded = load_recipe(out / "recipe.yaml")
    assert recorded.model.pipeline == pipeline
    gen = recorded.generation
    assert gen.num_inference_steps == 2  # Qwen's: its fixed schedule's length, not the blocks' default 8
    rows = table(out)
    assert len(rows["seed"]) == 6 and len(set(rows["image"])) == 6
    pipe = ModularPipeline.from_pretrained(str(model))
    pipe.load_components()
    alone = pipe(
        prompt=rows["prompt"][5],
        generator=torch.Generator().manual_seed(rows["seed"][5]),
        num_inference_steps=gen.num_inference_steps,
        height=gen.height,
        width=gen.width,
        output_type="pt",
        output="images",
    )
    kept = np.asarray(Image.open(io.BytesIO(rows["image"][5]))).astype(int)
    assert np.abs(to_uint8_hwc(opaque_rgb(alone))[0].astype(int) - kept).max() <= 2


@pytest.mark.e2e
def test_a_recipe_s_other_number_of_steps_drops_the_fixed_schedule(turbo_modular):
    from builders.generators.modular import load_modular
    from synthcore.model_refs import Placement

    cpu = Placement("cpu", "float32")
    for steps, schedule in ((2, TINY_SIGMAS), (3, None)):
        resolved = resolve_family(recipe(turbo_modular(QWEN_TURBO), f"num_inference_steps: {steps}"))
        assert load_modular(family_of(resolved), resolved, cpu).config.get("sample_sigmas") == schedule


@pytest.mark.e2e
def test_a_build_of_a_modular_repo_reports_its_recipe_errors_not_a_missing_model(turbo_modular, tmp_path: Path):
    """build.py names every key the blocks refuse (exit 2); it used to look for a model_index.json the modular repo
    has none of, and called the model missing (exit 4)."""
    from tests.helpers import build_here, write_recipe

    generation = "height: 48, guidance_scale: 3.0"
    path = write_recipe(tmp_path, RECIPE.format(model=turbo_modular(QWEN_TURBO), generation=generation))
    result = build_here(str(path), "--output-dir", str(tmp_path / "out"), check=False)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    problems = [line.split(":")[0].strip(" -") for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert problems == ["generation.height", "generation.guidance_scale"]
