"""The job plan is a pure, stable function of the recipe."""

from __future__ import annotations

import hashlib
import json

from builders.plan import content_fingerprint, make_plan
from builders.recipe import parse_recipe

BASE = """
name: t
seed: 7
templates: ["a {style} of a {subject}"]
variables: {style: [watercolor, sketch, photo, oil painting]}
classes:
  fox: {variables: {subject: [red fox, kit fox]}}
  dog: {variables: {subject: [golden retriever]}}
splits: {train: 6, test: 3}
generation: {batch_size: 2, images_per_prompt: 2}
output: {shard_size: 4}
"""


def plan_of(text: str):
    recipe = parse_recipe(text)
    return recipe, make_plan(recipe, content_fingerprint(recipe, "cpu", "float32"))


def rows(plan):
    return {job.id: (job.prompt, job.seed) for shard in plan.shards for job in shard.jobs}


def test_same_recipe_same_plan():
    assert plan_of(BASE)[1] == plan_of(BASE)[1]


def test_counts_and_order():
    recipe, plan = plan_of(BASE)
    assert plan.counts() == {"train": {"fox": 6, "dog": 6}, "test": {"fox": 3, "dog": 3}}
    ids = [job.id for shard in plan.shards for job in shard.jobs]
    assert ids[:7] == [f"train/fox/{i:06d}" for i in range(6)] + ["train/dog/000000"]
    assert all(len(b.jobs) <= 2 for s in plan.shards for b in s.batches)
    assert all(len({j.class_name for j in s.jobs}) == 1 for s in plan.shards)


def test_images_per_prompt_groups_consecutive_images():
    _, plan = plan_of(BASE)
    fox = [j.prompt for s in plan.shards_of("train") for j in s.jobs if j.class_name == "fox"]
    assert fox[0] == fox[1] and fox[2] == fox[3] and fox[1] != fox[2]


def test_changing_one_class_leaves_other_classes_seeds_and_shards_alone():
    _, before = plan_of(BASE)
    _, after = plan_of(BASE.replace("subject: [red fox, kit fox]", "subject: [fennec fox]"))
    dog = lambda plan: {k: v for k, v in rows(plan).items() if "/dog/" in k}
    assert dog(before) == dog(after)
    assert {s.key for s in before.shards if s.class_name == "dog"} == {
        s.key for s in after.shards if s.class_name == "dog"
    }
    assert rows(before)["train/fox/000000"] != rows(after)["train/fox/000000"]


def test_raising_a_count_or_adding_a_split_keeps_finished_images():
    _, before = plan_of(BASE)
    _, after = plan_of(BASE.replace("splits: {train: 6, test: 3}", "splits: {train: 8, test: 3, val: 2}"))
    old, new = rows(before), rows(after)
    assert all(new[k] == v for k, v in old.items())
    full_before = {s.key for s in before.shards if s.size == 4}
    assert full_before <= {s.key for s in after.shards}


def test_seeds_are_distinct_and_splits_never_share_an_image():
    _, plan = plan_of(BASE)
    seeds = [seed for _, seed in rows(plan).values()]
    assert len(set(seeds)) == len(seeds)


def test_prompt_disjoint_splits_share_no_prompt():
    recipe, plan = plan_of(BASE + "prompt_disjoint: true\n")
    for name in recipe.class_names:
        parts = recipe.split_prompts(name)
        assert not set(parts["train"]) & set(parts["test"])
        assert sorted(parts["train"] + parts["test"]) == sorted(recipe.prompts_of(name))
    train = {j.prompt for s in plan.shards_of("train") for j in s.jobs}
    test = {j.prompt for s in plan.shards_of("test") for j in s.jobs}
    assert train and test and not train & test


def test_fingerprint_changes_shard_keys():
    recipe, plan = plan_of(BASE)
    other = make_plan(recipe, content_fingerprint(recipe, "cuda", "float16"))
    assert not {s.key for s in plan.shards} & {s.key for s in other.shards}


def test_shard_keys_are_the_hash_of_the_fingerprint_and_the_jobs():
    """The bytes hashed never change, so the finished shards of earlier builds keep their keys."""
    recipe, plan = plan_of(BASE)
    fingerprint = content_fingerprint(recipe, "cpu", "float32")
    for shard in plan.shards:
        jobs = [[[j.id, j.prompt, j.negative_prompt, j.guidance_scale, j.seed] for j in b.jobs] for b in shard.batches]
        content = json.dumps([fingerprint, jobs], ensure_ascii=False, sort_keys=True).encode()
        assert shard.key == hashlib.sha256(content).hexdigest()[:24]
