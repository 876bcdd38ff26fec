"""Levers for diversity, without building: guidance sweeps in the recipe and the plan, sampled templates, and the
prompt-expansion lock (its file, its checks, the recipe that records it)."""

from __future__ import annotations

import itertools
import time
import tracemalloc
from pathlib import Path

import pytest

from builders.dryrun import images_by_guidance
from builders.expansion import (
    LockMismatch,
    clean_prompt,
    expansion_needs,
    lock_text,
    locked_recipe,
    planned_recipe,
    read_lock,
    with_prompts,
)
from builders.plan import guidance_counts, make_plan
from builders.prompts import expand_template, sample_templates
from builders.recipe import MAX_GUIDANCE_VALUES, RecipeError, parse_recipe
from builders.store.prompt_lock import PROMPT_LOCK, read_prompt_lock

BASE = """
name: t
seed: 5
classes:
  fox: {prompts: [a, b, c]}
  dog: {prompts: [d, e]}
splits: {train: 10, test: 3}
generation: {batch_size: 4, images_per_prompt: 2}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text, "r.yaml")
    return caught.value.problems


def all_jobs(recipe):
    return [job for shard in make_plan(recipe, {}).shards for job in shard.jobs]


# -- guidance sweeps -----------------------------------------------------------------------------------------------
def test_guidance_sweep_is_validated_with_key_paths():
    sweep = BASE.replace("batch_size: 4,", "batch_size: 4, guidance_scale: [1, -2, x],")
    assert problems(sweep) == [
        "generation.guidance_scale: value [1]: Input should be greater than or equal to 0 (got -2)"
    ]
    too_many = "[" + ", ".join(["1.0"] * (MAX_GUIDANCE_VALUES + 1)) + "]"
    assert problems(BASE.replace("batch_size: 4,", f"batch_size: 4, guidance_scale: {too_many},")) == [
        f"generation.guidance_scale: a guidance sweep takes 1 to {MAX_GUIDANCE_VALUES} values, got 65"
    ]
    assert problems(BASE.replace("batch_size: 4,", "batch_size: 4, guidance_scale: [],")) == [
        "generation.guidance_scale: a guidance sweep takes 1 to 64 values, got 0"
    ]
    assert problems(BASE.replace("{prompts: [d, e]}", "{prompts: [d, e], guidance_scale: [2, .nan]}")) == [
        "classes.dog.guidance_scale: value [1]: Input should be a finite number (got nan)"
    ]
    assert problems(BASE.replace("{prompts: [d, e]}", "{prompts: [d, e], guidance_scale: [2, 'x']}")) == [
        "classes.dog.guidance_scale: value [1]: expected a number, or a list of numbers (a sweep), got 'x'"
    ]


def test_guidance_settings_list_every_value_with_its_key_path_for_the_family_checks():
    recipe = parse_recipe(
        BASE.replace("batch_size: 4,", "batch_size: 4, guidance_scale: [0, 3.5],").replace(
            "{prompts: [d, e]}", "{prompts: [d, e], guidance_scale: 2}"
        )
    )
    assert recipe.guidance_settings() == [
        ("generation.guidance_scale[0]", 0.0),
        ("generation.guidance_scale[1]", 3.5),
        ("classes.dog.guidance_scale", 2.0),
    ]
    assert recipe.guidance_scales_of("fox") == (0.0, 3.5) and recipe.guidance_scales_of("dog") == (2.0,)


def test_each_image_takes_prompt_position_plus_occurrence_mod_k():
    recipe = parse_recipe(BASE.replace("batch_size: 4,", "batch_size: 4, guidance_scale: [1, 2, 3],"))
    prompts = {"fox": ["a", "b", "c"], "dog": ["d", "e"]}
    for job in all_jobs(recipe):
        group, within = divmod(job.index, 2)
        turn, position = divmod(group, len(prompts[job.class_name]))
        assert job.prompt == prompts[job.class_name][position]
        assert job.guidance_scale == [1, 2, 3][(position + turn * 2 + within) % 3], job.id
    # every prompt meets every value, and a batch mixes them
    fox = [(j.prompt, j.guidance_scale) for j in all_jobs(recipe) if j.class_name == "fox" and j.split == "train"]
    assert {g for p, g in fox if p == "a"} == {1.0, 2.0, 3.0}
    batch = make_plan(recipe, {}).shards[0].batches[0]
    assert len({job.guidance_scale for job in batch.jobs}) > 1
    with pytest.raises(ValueError, match="mixes guidance values"):
        _ = batch.guidance_scale


def test_without_a_sweep_keys_and_seeds_are_unchanged():
    plain = parse_recipe(BASE.replace("batch_size: 4,", "batch_size: 4, guidance_scale: 6.0,"))
    one = parse_recipe(BASE.replace("batch_size: 4,", "batch_size: 4, guidance_scale: [6],"))
    swept = parse_recipe(BASE.replace("batch_size: 4,", "batch_size: 4, guidance_scale: [6, 7],"))
    keys = [[s.key for s in make_plan(r, {}).shards] for r in (plain, one, swept)]
    assert keys[0] == keys[1] != keys[2]
    assert [j.seed for j in all_jobs(plain)] == [j.seed for j in all_jobs(swept)]
    # the key is the same JSON the plan always hashed: the listed plan of tests/test_plan.py agrees
    assert [(j.prompt, j.guidance_scale) for j in all_jobs(plain)] == [(j.prompt, 6.0) for j in all_jobs(one)]


@pytest.mark.parametrize("values", [1, 2, 3, 5, 64])
def test_guidance_counts_match_counting_image_by_image(values: int):
    for images, prompts, per_prompt in itertools.product([0, 1, 7, 30, 61], [1, 2, 5], [1, 3, 4]):
        brute = [0] * values
        for index in range(images):
            group, within = divmod(index, per_prompt)
            turn, position = divmod(group, prompts)
            brute[(position + turn * per_prompt + within) % values] += 1
        assert guidance_counts(images, prompts, per_prompt, values) == brute, (images, prompts, per_prompt)


def test_dry_run_counts_images_per_value_from_the_counts():
    recipe = parse_recipe(BASE.replace("batch_size: 4,", "batch_size: 4, guidance_scale: [1, 2, 3],"))
    counted: dict[float, int] = {}
    for job in all_jobs(recipe):
        counted[job.guidance_scale] = counted.get(job.guidance_scale, 0) + 1
    assert images_by_guidance(recipe, make_plan(recipe, {})) == counted
    big = parse_recipe(
        BASE.replace("train: 10", "train: 400000000").replace(
            "batch_size: 4,", "batch_size: 4, guidance_scale: [1, 2],"
        )
    )
    start = time.monotonic()
    counts = images_by_guidance(big, make_plan(big, {}))
    assert sum(counts.values()) == 2 * 400000003 and abs(counts[1.0] - counts[2.0]) <= 4
    assert time.monotonic() - start < 1


# -- sampled templates ---------------------------------------------------------------------------------------------
HUGE = (
    "name: t\nseed: {seed}\ntemplates: ['{{a}} {{b}} {{c}} {{d}}']\n"
    "variables: {{a: {v}, b: {v}, c: {v}, d: {v}}}\n"
    "template_samples: 200\nclasses: {{fox: {{}}, dog: {{template_samples: 3}}}}\nsplits: {{train: 5}}\n"
)
VALUES = "[" + ", ".join(f"v{i}" for i in range(1000)) + "]"


def test_a_trillion_combinations_are_sampled_not_expanded():
    tracemalloc.start()
    start = time.monotonic()
    recipe = parse_recipe(HUGE.format(seed=1, v=VALUES))
    fox, dog = recipe.prompts_of("fox"), recipe.prompts_of("dog")
    keys = [shard.key for shard in make_plan(recipe, {}).shards]
    seconds = time.monotonic() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 5 and peak < 50_000_000, (seconds, peak)
    assert len(fox) == len(set(fox)) == 200 and len(dog) == 3 and keys
    for prompt in fox + dog:
        assert all(word in VALUES for word in prompt.split()) and len(prompt.split()) == 4
    again = parse_recipe(HUGE.format(seed=1, v=VALUES))
    assert again.prompts_of("fox") == fox  # a function of the recipe (its seed), nothing else
    assert parse_recipe(HUGE.format(seed=2, v=VALUES)).prompts_of("fox") != fox
    assert fox[:3] != dog  # each class draws its own


def test_samples_are_distinct_expansion_members_and_all_of_them_when_asked_for_more():
    templates = ["{a} and {b}", "only {a}"]
    variables = {"a": ["x", "y", "z"], "b": ["1", "2"]}
    expanded = [p for t in templates for p in expand_template(t, variables)]  # 6 + 3 combinations
    drawn = sample_templates(templates, variables, 5, seed=0, class_name="fox")
    assert len(drawn) == len(set(drawn)) == 5 and set(drawn) <= set(expanded)
    assert sorted(sample_templates(templates, variables, 9, seed=0, class_name="fox")) == sorted(expanded)
    text = "name: t\ntemplates: ['{a} and {b}', 'only {a}']\nvariables: {a: [x, y, z], b: ['1', '2']}\n"
    recipe = parse_recipe(text + "template_samples: 50\nclasses: {fox: {prompts: [lit]}}\nsplits: {train: 1}\n")
    assert recipe.prompts_of("fox") == ["lit", *expanded]  # at least as many samples as combinations: all of them


def test_a_class_drawing_samples_needs_templates():
    assert problems(BASE.replace("{prompts: [d, e]}", "{prompts: [d, e], template_samples: 3}")) == [
        "classes.dog.template_samples: the class has no templates to draw from"
    ]


def test_template_samples_bound_the_count_check():
    huge = HUGE.format(seed=1, v=VALUES).replace("template_samples: 200\n", "")
    assert "draw some with 'template_samples'" in problems(huge)[0]
    assert problems(huge.replace("classes:", "template_samples: 200000\nclasses:"))[0].startswith(
        "template_samples: Input should be less than or equal to 100000"
    )


# -- prompt expansion: the lock ------------------------------------------------------------------------------------
EXPANDING = BASE + "prompt_expansion: {model: tiny-random, per_class: 2, max_new_tokens: 8}\n"


def test_a_class_may_have_only_expanded_prompts_and_counts_them_before_they_exist():
    text = EXPANDING.replace("{prompts: [d, e]}", "{}") + "prompt_disjoint: true\n"
    recipe = parse_recipe(text)
    assert recipe.prompts_of("dog") == []
    locked = with_prompts(recipe, {"fox": ["p", "q"], "dog": ["r", "s"]})
    assert locked.prompts_of("dog") in (["r", "s"],) and locked.prompts_of("fox") == ["a", "b", "c", "p", "q"]
    assert sorted(p for ps in locked.split_prompts("dog").values() for p in ps) == ["r", "s"]


def test_recorded_prompts_must_name_every_class_within_per_class():
    text = EXPANDING.replace("max_new_tokens: 8}", "max_new_tokens: 8, prompts: {fox: [p, q, r], cat: [s]}}")
    assert problems(text) == [
        "prompt_expansion.prompts: no prompts for class 'dog'",
        "prompt_expansion.prompts.cat: not a class",
        "prompt_expansion.prompts.fox: 3 prompts; per_class is 2",
    ]
    assert problems(EXPANDING.replace("per_class: 2", "per_class: 2, instruction: 'a {thing}'")) == [
        "prompt_expansion.instruction: the only field an instruction takes is {label} (the class's label text), got "
        "['thing']"
    ]
    assert problems(EXPANDING.replace("per_class: 2", "per_class: 2, temperature: 0")) == [
        "prompt_expansion.temperature: Input should be greater than 0 (got 0)"
    ]


def test_the_lock_round_trips_and_is_checked_against_the_recipe(tmp_path: Path):
    recipe = parse_recipe(EXPANDING)
    lock = lambda: read_prompt_lock(tmp_path)  # noqa: E731 - read again after every write
    assert locked_recipe(recipe, lock()) is None  # no lock yet
    assert [need.key for need in expansion_needs(recipe, lock(), overwrite=False)] == ["prompt_expansion.model"]
    locked = with_prompts(recipe, {"fox": ["ünï “quoted”", "two: x"], "dog": ["d1", "d2"]})
    (tmp_path / PROMPT_LOCK).write_text(lock_text(locked), encoding="utf-8")
    assert read_lock(lock()) == (recipe.prompt_expansion.settings(), locked.prompt_expansion.prompts)
    assert locked_recipe(recipe, lock()) == locked
    assert expansion_needs(recipe, lock(), overwrite=False) == []  # the lock serves: no model to load
    assert expansion_needs(locked, lock(), overwrite=True) == []  # recorded prompts need none either
    assert planned_recipe(recipe, lock()) == (locked, None)
    # the rebuilt recipe (recipe.yaml records the prompts) plans the same jobs as the recipe plus its lock
    from builders.recipe import recipe_to_yaml

    rebuilt = parse_recipe(recipe_to_yaml(locked))
    assert [s.key for s in make_plan(rebuilt, {}).shards] == [s.key for s in make_plan(locked, {}).shards]

    changed = parse_recipe(EXPANDING.replace("max_new_tokens: 8", "max_new_tokens: 9"))
    with pytest.raises(LockMismatch, match=r"other prompt_expansion settings \(max_new_tokens: 8 there, 9 in the"):
        locked_recipe(changed, lock())
    assert expansion_needs(changed, read_prompt_lock(tmp_path), overwrite=False) == []  # refused before any model loads
    assert [need.ref for need in expansion_needs(changed, read_prompt_lock(tmp_path), overwrite=True)] == [
        "tiny-random"
    ]
    assert expansion_needs(recipe, read_prompt_lock(tmp_path), overwrite=True) == []  # a lock that matches is kept
    other_classes = parse_recipe(EXPANDING.replace("dog: {prompts: [d, e]}", "cat: {prompts: [d, e]}"))
    with pytest.raises(LockMismatch, match="holds the prompts of classes"):
        locked_recipe(other_classes, lock())
    (tmp_path / PROMPT_LOCK).write_text("prompts: [", encoding="utf-8")
    with pytest.raises(LockMismatch, match="invalid prompt lock"):
        locked_recipe(recipe, lock())


def test_dry_run_before_the_first_build_counts_placeholders(tmp_path: Path):
    recipe, note = planned_recipe(parse_recipe(EXPANDING), read_prompt_lock(tmp_path))
    assert len(recipe.prompts_of("fox")) == 5 and "no prompts.lock.yaml" in note


@pytest.mark.parametrize(
    ("written", "prompt"),
    [
        ("  a fox in snow\nsecond line", "a fox in snow"),
        ('\n\n"a   quoted\tfox"  ', "a quoted fox"),
        ("\x00\ufffd\u200b", ""),
        ("x" * 2000, "x" * 1000),
    ],
)
def test_what_the_model_writes_is_cleaned_into_one_prompt(written: str, prompt: str):
    assert clean_prompt(written) == prompt


def test_dry_run_of_the_shipped_recipe_shows_the_sweep_and_the_coming_expansion(tmp_path: Path, capsys):
    from builders.cli import main

    assert main(["recipes/fox_dog_levers.yaml", "--dry-run", "--output-dir", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "images per guidance value (a guidance sweep): 1.5: 5, 3: 6, 4: 4, 7.5: 3, 9: 6" in text
    assert "no prompts.lock.yaml in" in text and "write 3 prompts per class" in text
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_the_family_checks_each_value_of_a_sweep(tmp_path: Path):
    import json

    from builders.generators import resolve_family

    schnell = tmp_path / "schnell"  # only what the family is read from: FLUX.1 [schnell] has no guidance embedding
    (schnell / "transformer").mkdir(parents=True)
    (schnell / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    (schnell / "transformer" / "config.json").write_text(json.dumps({"guidance_embeds": False}))
    text = (
        f"name: t\nmodel: {{id: {schnell}}}\ngeneration: {{guidance_scale: [0, 2.5], height: 512, width: 512}}\n"
        "classes: {fox: {prompts: [a], guidance_scale: [0.0]}, dog: {prompts: [b], guidance_scale: [1, 0]}}\n"
        "splits: {train: 1}\n"
    )
    with pytest.raises(RecipeError) as caught:
        resolve_family(parse_recipe(text), "r.yaml")
    assert [problem.split(":")[0] for problem in caught.value.problems] == [
        "generation.guidance_scale[1]",
        "classes.dog.guidance_scale[0]",
    ]
    assert resolve_family(parse_recipe(text.replace("2.5", "0").replace("[1, 0]", "[0]"))).guidance_scales_of(
        "dog"
    ) == (0.0,)
