"""Well-known models are known offline: the table agrees with the generator plug-ins, and every shipped recipe's
dry run answers with an empty Hugging Face cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from builders.cli import main
from builders.generators import FAMILIES, family_of, generator_of_class
from builders.generators.known import KNOWN_MODELS
from builders.generators.sources import ModelFiles
from builders.recipe import load_recipe
from tests.helpers import ROOT, run_build, write_recipe

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_every_family_has_a_known_model_and_every_known_model_a_generator():
    for family in FAMILIES:
        assert family.example in KNOWN_MODELS, family.name
        assert KNOWN_MODELS[family.example].pipeline in family.pipeline_classes
    for model_id, known in KNOWN_MODELS.items():  # a registered family's, or one the generic plug-in runs
        assert generator_of_class(known.pipeline) is not None, model_id


def test_the_models_shipped_recipes_name_are_known():
    for path in RECIPES:
        model_id = load_recipe(path).model.id
        assert model_id == "tiny-random" or model_id in KNOWN_MODELS, path.name


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch) -> dict[str, str]:
    """An empty Hugging Face cache, offline, for this process (huggingface_hub read its settings at import) and
    for the processes it starts (the returned environment)."""
    import huggingface_hub.constants

    from builders.generators.sources import _read_json

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    _read_json.cache_clear()  # files read from another test's cache are not in this one
    return {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def test_a_known_model_answers_offline_from_the_table_and_an_unknown_one_does_not(empty_hub_cache):
    files = ModelFiles("black-forest-labs/FLUX.1-schnell")
    assert files.pipeline_class() == "FluxPipeline"
    assert files.config("transformer")["guidance_embeds"] is False
    assert not ModelFiles("stabilityai/sdxl-turbo").ships_safety_checker()
    with pytest.raises(ValueError, match="not in the local Hub cache"):
        ModelFiles("someone/unknown-model").pipeline_class()


@pytest.mark.parametrize("recipe", [p.name for p in RECIPES])
def test_every_shipped_recipe_plans_offline_with_an_empty_cache(recipe: str, empty_hub_cache, tmp_path: Path, capsys):
    assert main([f"recipes/{recipe}", "--dry-run", "--output-dir", str(tmp_path / "out")]) == 0
    result = capsys.readouterr()
    assert "to make:" in result.out and "estimated GPU time" in result.out
    model_id = load_recipe(ROOT / "recipes" / recipe).model.id
    if model_id in KNOWN_MODELS:
        assert f"model.id {model_id!r} is not downloaded yet" in result.out
        assert f"hf download {model_id} --include" in result.out
        gigabytes = KNOWN_MODELS[model_id].gigabytes
        assert gigabytes is None or f"about {gigabytes:g} GB" in result.out
        assert "also not downloaded yet: scoring.clip.model 'openai/clip-vit-base-patch32'" in result.out


def test_the_family_resolved_offline_is_the_family_of_the_model(empty_hub_cache):
    from builders.generators import resolve_family

    recipe = resolve_family(load_recipe(ROOT / "recipes" / "fox_dog_sdxl_turbo.yaml"))
    assert recipe.model.pipeline == "StableDiffusionXLPipeline"
    assert family_of(recipe).name == "sdxl"


def test_flux2_dev_resolves_offline_to_the_generic_plug_in_with_its_calls_defaults(empty_hub_cache, tmp_path: Path):
    from builders.generators import describe, resolve_family
    from builders.generators.generic import EMBEDDED_GUIDANCE, Generic

    text = (
        "name: dev\nmodel: {id: black-forest-labs/FLUX.2-dev}\nclasses: {fox: {prompts: [a fox]}}\nsplits: {train: 1}\n"
    )
    recipe = resolve_family(load_recipe(write_recipe(tmp_path, text)))
    assert recipe.model.pipeline == "Flux2Pipeline" and isinstance(family_of(recipe), Generic)
    gen = recipe.generation
    assert (gen.height, gen.width, gen.num_inference_steps, gen.guidance_scale) == (1024, 1024, 50, 4.0)
    assert recipe.model.max_sequence_length == 512
    assert describe(recipe)["guidance"] == EMBEDDED_GUIDANCE, "one pass a step, not classifier-free guidance"


def test_offline_an_unknown_model_is_a_clear_error_and_a_real_build_exits_4(empty_hub_cache, tmp_path: Path, capsys):
    assert main(["recipes/smoke.yaml", "--dry-run", "model.id=someone/unknown-model"]) == 2
    assert "someone/unknown-model" in capsys.readouterr().err
    started = time.monotonic()
    out = tmp_path / "out"
    built = run_build("recipes/fox_dog_sdxl_turbo.yaml", "--output-dir", str(out), env=empty_hub_cache, check=False)
    assert built.returncode == 4 and "Traceback" not in built.stderr
    assert "stabilityai/sdxl-turbo" in built.stderr and not out.exists()
    assert time.monotonic() - started < 60
