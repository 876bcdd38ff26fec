"""Recipe validation: every problem found at load time, with the file, key path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.recipe import RecipeError, load_recipe, parse_recipe
from tests.conftest import ROOT, write_recipe

MINIMAL = "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text, "r.yaml")
    assert str(caught.value).startswith("r.yaml: invalid recipe")
    return caught.value.problems


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate_and_open_with_their_command(path: Path):
    recipe = load_recipe(path)
    first_lines = path.read_text(encoding="utf-8").splitlines()[:3]
    assert any(f"build.py recipes/{path.name}" in line for line in first_lines if line.startswith("#")), first_lines
    assert recipe.name == path.stem


def test_fox_dog_reproduces_the_reference_exercise():
    recipe = load_recipe(ROOT / "recipes" / "fox_dog.yaml")
    assert recipe.model.id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert (
        recipe.generation.guidance_scale,
        recipe.generation.num_inference_steps,
        recipe.generation.images_per_prompt,
    ) == (7.5, 50, 2)
    assert set(recipe.class_names) == {"fox", "dog"} and {"train", "test"} <= set(recipe.splits)
    assert recipe.negative_prompt
    assert "fox" in recipe.prompts_of("fox")[0] and "golden retriever" in recipe.prompts_of("dog")[0]


def test_defaults_are_the_reference_exercise():
    recipe = parse_recipe(MINIMAL)
    assert recipe.generation.guidance_scale == 7.5 and recipe.generation.num_inference_steps == 50
    assert recipe.model.id == "stable-diffusion-v1-5/stable-diffusion-v1-5"


def test_all_problems_reported_together_with_key_paths():
    found = problems(
        "name: t\nguidance_scal: 3\nclasses:\n  fox: {prompts: [''], promts: [x]}\n"
        "splits: {train: 0, test: -1}\nmodel: {scheduler: nonsense}\ngeneration: {guidance_scale: high}\n"
    )
    text = "\n".join(found)
    for expected in (
        "guidance_scal: unknown key",
        "classes.fox.prompts[0]",
        "classes.fox.promts: unknown key",
        "splits.train",
        "splits.test",
        "model.scheduler: unknown scheduler",
        "generation.guidance_scale",
    ):
        assert expected in text, (expected, found)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: t\nclasses: {}\nsplits: {train: 1}\n", "classes: needs at least one class"),
        ("name: t\nclasses: {a: {prompts: [x]}, a: {prompts: [y]}}\nsplits: {train: 1}\n", "duplicate key 'a'"),
        (
            "name: t\nclasses: {Fox: {prompts: [x]}, fox: {prompts: [y]}}\nsplits: {train: 1}\n",
            "differ other than by case",
        ),
        ("name: t\nclasses: {a: {prompts: [x]}}\nsplits: {}\n", "splits: needs at least one split"),
        (
            "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1}\nmodel: {id: ./no/such/dir}\n",
            "model.id: local model path",
        ),
        ("name: t\nclasses: {a: {prompts: [x]}}\n", "splits: required key is missing"),
        ("name: t\nclasses: {a: {templates: ['a {kind}']}}\nsplits: {train: 1}\n", "variable {kind} is not defined"),
        (
            "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1, test: 1}\nprompt_disjoint: true\n",
            "at least one distinct prompt per split",
        ),
        ("name: t\nclasses: {a: {}}\nsplits: {train: 1}\n", "classes.a: has no prompts"),
        (
            "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: '3'}\n",
            "splits.train: Input should be a valid integer",
        ),
        ("name: [t\n", "malformed YAML"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_bad_recipes_fail_clearly(text: str, expected: str):
    assert any(expected in p for p in problems(text)), problems(text)


def test_yaml_tags_that_construct_objects_are_rejected_not_run(tmp_path: Path):
    marker = tmp_path / "pwned"
    text = (
        f"name: !!python/object/apply:os.system ['touch {marker}']\n"
        "classes: {a: {prompts: [x]}}\nsplits: {train: 1}\n"
    )
    assert any("malformed YAML" in p for p in problems(text))
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/b", "..", ".hidden", "x\\y"])
def test_path_characters_in_names_are_refused(name: str):
    assert problems(f"name: '{name}'\nclasses: {{a: {{prompts: [x]}}}}\nsplits: {{train: 1}}\n")
    assert problems(f"name: t\nclasses: {{'{name}': {{prompts: [x]}}}}\nsplits: {{train: 1}}\n")
    assert problems(f"name: t\nclasses: {{a: {{prompts: [x]}}}}\nsplits: {{'{name}': 1}}\n")


def test_file_errors_name_the_file(tmp_path: Path):
    path = write_recipe(
        tmp_path, "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1}\ngeneration: {guidance_scal: 3}\n"
    )
    with pytest.raises(RecipeError, match=str(path)) as caught:
        load_recipe(path)
    assert caught.value.problems == [
        "generation.guidance_scal: unknown key (check the spelling; see the recipe reference in README.md)"
    ]
    with pytest.raises(RecipeError, match="cannot read the file"):
        load_recipe(tmp_path / "missing.yaml")


def test_templates_expand_into_every_combination_and_unicode_works():
    recipe = parse_recipe(
        "name: t\ntemplates: ['a {style} of a {subject}']\nvariables: {style: [watercolor, sketch]}\n"
        "classes:\n  fox: {variables: {subject: [red fox, kit fox]}}\n  여우: {prompts: [수채화 여우], templates: []}\n"
        "splits: {train: 2}\n"
    )
    assert recipe.prompts_of("fox") == [
        "a watercolor of a red fox",
        "a watercolor of a kit fox",
        "a sketch of a red fox",
        "a sketch of a kit fox",
    ]
    assert recipe.prompts_of("여우") == ["수채화 여우"]


def test_problems_of_every_class_and_of_the_filters_are_reported_together():
    found = problems(
        "name: t\nclasses:\n  a: {templates: ['{x} fox']}\n  b: {templates: ['{y} dog']}\n  c: {}\n"
        "splits: {train: 1}\nscoring: {clip: {enabled: false}}\nfilters: {min_clip_score: 20}\n"
    )
    text = "\n".join(found)
    for expected in (
        "variable {x} is not defined for class 'a'",
        "variable {y} is not defined for class 'b'",
        "classes.c: has no prompts",
        "filters.min_clip_score",
    ):
        assert expected in text, (expected, found)
