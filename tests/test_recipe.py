"""Recipe validation: every problem found at load time, with the file, key path and what was expected."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from builders.recipe import MAX_PROMPTS_PER_CLASS, RecipeError, load_recipe, parse_recipe
from tests.helpers import ROOT, write_recipe

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
            "the same name once normalized",
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
        "generation.guidance_scal: unknown key (check the spelling; see the recipe reference in docs/recipe.md)"
    ]
    with pytest.raises(RecipeError, match="cannot read the recipe"):
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


# -- bounds: sizes, counts, seeds and texts have upper limits that name their key ----------------------------------
@pytest.mark.parametrize(
    "extra, expected",
    [
        ("generation: {height: 8192}", "generation.height: Input should be less than or equal to 4096"),
        ("generation: {width: 20000}", "generation.width: Input should be less than or equal to 4096"),
        ("generation: {num_inference_steps: 1001}", "generation.num_inference_steps: Input should be less than"),
        ("generation: {batch_size: 100000}", "generation.batch_size: Input should be less than or equal to 1024"),
        ("generation: {images_per_prompt: 1000000}", "generation.images_per_prompt: Input should be less than"),
        ("seed: 9223372036854775808", "seed: Input should be less than or equal to 9223372036854775807"),
        ("output: {shard_size: 1000000}", "output.shard_size: Input should be less than or equal to 100000"),
        ("model: {max_regenerations: 1000}", "model.max_regenerations: Input should be less than or equal to 100"),
        ("model: {revision: 'main) [x](javascript:y'}", "model.revision: String should match pattern"),
        ("description: '" + "d" * 10_001 + "'", "description: String should have at most 10000 characters"),
        ("negative_prompt: '" + "n" * 1001 + "'", "negative_prompt: String should have at most 1000 characters"),
    ],
)
def test_sizes_counts_and_seeds_have_upper_bounds(extra: str, expected: str):
    found = problems(MINIMAL + extra + "\n")
    assert len(found) == 1 and found[0].startswith(expected), found
    assert len(found[0]) < 300


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("generation: {guidance_scale: .inf}", "generation.guidance_scale: Input should be a finite number"),
        ("generation: {guidance_scale: .nan}", "generation.guidance_scale: Input should be a finite number"),
        ("filters: {min_clip_score: .nan}", "filters.min_clip_score: Input should be a finite number"),
    ],
)
def test_non_finite_numbers_are_refused(extra: str, expected: str):
    assert problems(MINIMAL + extra + "\n")[0].startswith(expected)
    assert problems(MINIMAL.replace("{prompts: [x]}", "{prompts: [x], guidance_scale: -.inf}"))[0].startswith(
        "classes.a.guidance_scale: Input should be a finite number"
    )


def test_split_counts_and_the_whole_plan_are_bounded():
    assert problems("name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1000000001}\n")[0].startswith(
        "splits.train: Input should be less than or equal to 1000000000"
    )
    found = problems("name: t\nclasses: {a: {prompts: [x]}, b: {prompts: [y]}}\nsplits: {train: 600000000}\n")
    assert found == [
        "splits: 2 classes × 600,000,000 images each = 1,200,000,000 images; at most 1,000,000,000 in one recipe"
    ]


def test_the_number_of_classes_is_bounded(monkeypatch):
    monkeypatch.setattr("builders.recipe.MAX_CLASSES", 2)
    found = problems("name: t\nclasses: {a: {prompts: [x]}, b: {prompts: [x]}, c: {prompts: [x]}}\nsplits: {t: 1}\n")
    assert found == ["classes: 3 classes; at most 2"]


def test_prompts_and_names_have_bounded_lengths():
    found = problems(
        f"name: t\nclasses: {{a: {{prompts: ['{'p' * 1001}'], label_text: '{'l' * 1001}'}}}}\nsplits: {{t: 1}}\n"
    )
    assert [p.split(":")[0] for p in found] == ["classes.a.prompts[0]", "classes.a.label_text"]
    assert all("at most 1000 characters" in p and len(p) < 300 for p in found)
    found = problems(f"name: t\nclasses: {{'{'c' * 101}': {{prompts: [x]}}}}\nsplits: {{t: 1}}\n")
    assert len(found) == 1 and found[0].startswith("classes: class name 'cccc") and "longer than 100" in found[0]


# -- templates are counted before they expand, and only plain {name} fields are allowed ---------------------------
def test_template_expansion_is_counted_before_it_happens():
    values = "[" + ", ".join(f"v{i}" for i in range(1000)) + "]"
    text = (
        "name: t\ntemplates: ['{a} {b} {c} {d}']\n"
        f"variables: {{a: {values}, b: {values}, c: {values}, d: {values}}}\n"
        "classes: {fox: {}}\nsplits: {train: 1}\n"
    )
    start = time.monotonic()
    found = problems(text)  # 10^12 prompts: counted, never expanded
    assert time.monotonic() - start < 5
    assert found == [
        "classes.fox: its templates expand to 1,000,000,000,000 prompts (templates[0]: a 1,000 × b 1,000 × c 1,000 × "
        f"d 1,000); at most {MAX_PROMPTS_PER_CLASS:,} per class: use fewer variable values, or draw some with "
        "'template_samples'"
    ]


def test_prompts_of_all_classes_together_are_bounded(monkeypatch):
    monkeypatch.setattr("builders.recipe_checks.MAX_PROMPTS", 3)
    found = problems("name: t\nclasses: {a: {prompts: [x, y]}, b: {prompts: [x, y]}}\nsplits: {t: 1}\n")
    assert found == ["classes: the 2 classes expand to 4 prompts in all; at most 3"]


@pytest.mark.parametrize(
    "template, shown",
    [
        ("a {style:>2000000000}", "{style:>2000000000}"),
        ("a {style!r}", "{style!r}"),
        ("a {style.__class__}", "{style.__class__}"),
        ("a {style[0]}", "{style[0]}"),
        ("a {0}", "{0}"),
    ],
)
def test_templates_take_only_plain_name_fields(template: str, shown: str):
    start = time.monotonic()
    found = problems(
        f"name: t\ntemplates: ['{template}']\nvariables: {{style: [x]}}\nclasses: {{a: {{}}}}\nsplits: {{t: 1}}\n"
    )
    assert time.monotonic() - start < 5
    assert found == [
        f"templates[0]: field {shown!r} is not a plain {{name}} field (no format spec, conversion, index or attribute; "
        f"write '{{{{' and '}}}}' for literal braces) in {template!r}"
    ]
    found = problems(
        f"name: t\nclasses: {{a: {{templates: ['{template}'], variables: {{style: [x]}}}}}}\nsplits: {{t: 1}}\n"
    )
    assert len(found) == 1 and found[0].startswith("classes.a.templates[0]: field")


def test_literal_braces_and_unicode_variable_names_work():
    recipe = parse_recipe(
        "name: t\nclasses: {a: {templates: ['{{x}} {스타일}'], variables: {스타일: [수채화]}}}\nsplits: {t: 1}\n"
    )
    assert recipe.prompts_of("a") == ["{x} 수채화"]
    assert problems(MINIMAL + "variables: {'a b': [x]}\n")[0].startswith("variables.a b.[key]: variable name 'a b'")


def test_expanded_prompts_have_a_bounded_length():
    long = "v" * 600
    text = f"name: t\ntemplates: ['{{a}} and {{a}}']\nvariables: {{a: [x, {long}]}}\nclasses: {{c: {{}}}}\n"
    found = problems(text + "splits: {t: 1}\n")
    assert found == ["templates[0]: expands to prompts of up to 1,205 characters for class 'c'; at most 1,000"]


# -- names: no control or invisible characters, no look-alikes, bounded lengths ------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("smoke\n", "name: 'smoke\\n' is not a safe dataset name"),
        ("s" * 300, "name: 'sssssss"),
        ("smoke ", "name: 'smoke ' is not a safe dataset name"),
    ],
)
def test_dataset_names_must_be_plain(name: str, expected: str):
    found = problems(f"name: {json.dumps(name)}\nclasses: {{a: {{prompts: [x]}}}}\nsplits: {{train: 1}}\n")
    assert len(found) == 1 and found[0].startswith(expected) and len(found[0]) < 300, found


@pytest.mark.parametrize(
    "names, expected",
    [
        (["café", "cafe\u0301"], "are the same name once normalized"),  # composed and decomposed é
        (["fox", "ｆｏｘ"], "are the same name once normalized"),  # fullwidth
        (["Fox", "FOX"], "are the same name once normalized"),
        (["Straße", "STRASSE"], "are the same name once normalized"),
        (["fo\u200dx"], "holds a control, format or invisible character"),  # zero-width joiner
        (["fox\u202e"], "holds a control, format or invisible character"),  # right-to-left override
        (["a\tb"], "holds a control, format or invisible character"),
        (["fox\n"], "is empty or has leading/trailing spaces"),
        (["fox\u00a0"], "is empty or has leading/trailing spaces"),  # no-break space
        (["line\u2028break"], "holds a control, format or invisible character"),
    ],
)
def test_class_names_are_visible_and_distinct(names: list[str], expected: str):
    classes = ", ".join(f"{json.dumps(n)}: {{prompts: [x]}}" for n in names)
    found = problems(f"name: t\nclasses: {{{classes}}}\nsplits: {{train: 1}}\n")
    assert len(found) == 1 and found[0].startswith("classes: ") and expected in found[0], found


def test_split_names_are_plain_and_distinct():
    assert "split names must be at most 100 letters" in problems(MINIMAL.replace("train: 1", '"train\\n": 1'))[0]
    assert problems(MINIMAL.replace("train: 1", "train: 1, Train: 1")) == [
        "splits: split names must differ other than by case: train, Train"
    ]


# -- one run lists every problem --------------------------------------------------------------------------------------
def test_structural_template_and_filter_problems_are_reported_in_one_run():
    found = problems(
        "name: t\nguidance_scal: 3\n"
        "templates: ['a {style} {kind}', 'b {x:>9}']\nvariables: {style: [a]}\n"
        "classes:\n  fox: {prompts: ['']}\n  dog: {templates: ['{y} dog']}\n"
        "splits: {train: 0}\nscoring: {clip: {enabled: false}}\nfilters: {min_clip_score: 20}\n"
    )
    assert sorted(found) == sorted(
        [
            "guidance_scal: unknown key (check the spelling; see the recipe reference in docs/recipe.md)",
            "classes.fox.prompts[0]: String should have at least 1 character (got '')",
            "splits.train: Input should be greater than 0 (got 0)",
            "templates[1]: field '{x:>9}' is not a plain {name} field (no format spec, conversion, index or attribute; "
            "write '{{' and '}}' for literal braces) in 'b {x:>9}'",
            "templates[0]: variable {kind} is not defined for class 'fox' (define it in 'variables' or "
            "'classes.fox.variables')",
            "classes.dog.templates[0]: variable {y} is not defined for class 'dog' (define it in 'variables' or "
            "'classes.dog.variables')",
            "filters.min_clip_score: reads the clip scores, but scoring.clip.enabled is false",
        ]
    )
