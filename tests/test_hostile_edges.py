"""Numbers and addresses at their edges: every float that reaches the GPU or the optimizer is bounded in its schema
and refused with the key and the bound, before any work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from builders.limits import MAX_GUIDANCE_SCALE
from builders.recipe import RecipeError, parse_recipe
from training.config import parse_config

MINIMAL = "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1}\n"


def recipe_problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text, "r.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("generation: {guidance_scale: 1.0e+300}", "generation.guidance_scale: Input should be between 0 and 100"),
        ("generation: {guidance_scale: 100.5}", "generation.guidance_scale: Input should be between 0 and 100"),
        ("generation: {guidance_scale: [3, 1.0e+30]}", "generation.guidance_scale: value [1]: Input should be between"),
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
