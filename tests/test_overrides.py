"""Recipe values on the command line (``build.py RECIPE key.path=value``): set before validation, checked like the
file, recorded like any recipe value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builders.cli import main, parse_args
from builders.overrides import load_recipe_with, parse_override
from builders.preview import DEFAULT_PREVIEW
from builders.recipe import RecipeError, load_recipe, parse_recipe, recipe_to_yaml
from tests.helpers import ROOT, write_recipe

SMOKE = ROOT / "recipes" / "smoke.yaml"


def overridden(path: Path, *texts: str):
    return load_recipe_with(path, [parse_override(text) for text in texts])


def test_an_override_gives_the_recipe_of_the_file_that_says_so(tmp_path: Path):
    data = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    data["generation"]["num_inference_steps"] = 2
    data["splits"]["train"] = 8
    data["model"]["dtype"] = "float32"
    edited = write_recipe(tmp_path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    recipe = overridden(SMOKE, "generation.num_inference_steps=2", "splits.train=8", "model.dtype=float32")
    assert recipe == load_recipe(edited)
    assert list(recipe.classes) == list(load_recipe(SMOKE).classes)  # the file's order: the labels stay
    assert list(recipe.splits) == ["train", "test"]
    assert recipe.model_fields_set == load_recipe(edited).model_fields_set  # family defaults fill the same keys
    stored = parse_recipe(recipe_to_yaml(recipe))
    assert stored.generation.num_inference_steps == 2 and stored.splits["train"] == 8


def test_values_are_yaml_and_free_names_are_taken():
    recipe = overridden(
        SMOKE,
        "generation.guidance_scale=[1.5, 4]",
        "splits.val=2",
        "prompt_disjoint=false",
        "classes.cat={prompts: [a photo of a cat, a cat], templates: []}",
        "negative_prompt=",
        "hub.private=true",
    )
    assert recipe.generation.guidance_scale == [1.5, 4.0]
    assert recipe.splits == {"train": 4, "test": 2, "val": 2}
    assert recipe.classes["cat"].prompts == ["a photo of a cat", "a cat"]
    assert recipe.negative_prompt == ""
    assert recipe.hub.private is True


def test_an_unknown_key_is_named_with_the_override_that_made_it():
    with pytest.raises(RecipeError) as caught:
        overridden(SMOKE, "generation.num_inference_stepz=4", "modle.id=x", "classes.fox.promts=[a]", "seed=1")
    problems = caught.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("command-line override 'generation.num_inference_stepz=4'")
    assert "num_inference_steps" in problems[0]  # the keys that are there
    assert "modle" in problems[1] and "classes.fox.promts" in problems[2]


def test_a_bad_value_is_checked_by_the_files_rules_with_its_key_path():
    with pytest.raises(RecipeError) as caught:
        overridden(SMOKE, "generation.height=30", "splits.train=-1")
    text = str(caught.value)
    assert "generation.height" in text and "splits.train" in text
    assert "generation.height=30" in caught.value.source  # the message says the overrides were applied


@pytest.mark.parametrize("text", ["=4", "generation..steps=4", "seed", "seed=[1"])
def test_a_malformed_override_is_refused(text: str):
    with pytest.raises(ValueError, match="override"):
        parse_override(text)


def test_a_new_model_drops_the_pipeline_recorded_for_the_old_one(tmp_path: Path):
    data = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    data["model"]["pipeline"] = "StableDiffusionPipeline"
    path = write_recipe(tmp_path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    assert overridden(path, "model.id=stabilityai/sdxl-turbo").model.pipeline is None
    assert overridden(path, "seed=3").model.pipeline == "StableDiffusionPipeline"


def test_the_command_line_takes_overrides_anywhere_and_exits_2_on_a_bad_one(tmp_path: Path, capsys):
    out = str(tmp_path / "out")
    assert main(["recipes/smoke.yaml", "--dry-run", "splits.train=6", "--output-dir", out, "splits.test=4"]) == 0
    assert "recipe 'smoke': 30 images" in capsys.readouterr().out  # 3 classes x (6 + 4)
    assert main(["recipes/smoke.yaml", "--dry-run", "generation.stepz=4"]) == 2
    assert "generation.stepz" in capsys.readouterr().err


def test_a_bare_preview_gives_back_the_override_after_it():
    args = parse_args(["recipes/smoke.yaml", "--preview", "splits.train=2", "seed=3"])
    assert args.preview == DEFAULT_PREVIEW and sorted(args.overrides) == ["seed=3", "splits.train=2"]
    assert parse_args(["recipes/smoke.yaml", "--preview", "2"]).preview == 2
    with pytest.raises(SystemExit):
        parse_args(["recipes/smoke.yaml", "--preview", "--dry-run"])
