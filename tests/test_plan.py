"""The job plan is a pure, stable function of the recipe."""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import tracemalloc
from pathlib import Path

import pytest

from builders import plan as plan_module
from builders.dryrun import describe
from builders.plan import (
    FEWEST_SHARDS,
    JobSource,
    Plan,
    batches_per_shard,
    content_fingerprint,
    derive_seed,
    make_plan,
)
from builders.recipe import RecipeError, parse_recipe
from builders.store.local import OutputDir
from tests.handmade import handmade_recipe, write_shards

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
    full_before = {s.key for s in before.shards if s.size == 2}  # one batch each: a small plan (batches_per_shard)
    assert full_before and full_before <= {s.key for s in after.shards}


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


# -- prompt-disjoint splits that stay put ---------------------------------------------------------------------------
def many_prompts(n: int, offset: int = 0) -> str:
    return "[" + ", ".join(f"prompt {i}" for i in range(offset, offset + n)) + "]"


DISJOINT = """
name: t
seed: 3
model: {id: tiny-random}  # the dry run costs images by the model's family, known here without the Hub
classes:
  fox: {prompts: PROMPTS}
splits: {train: 40, val: 10, test: 10}
prompt_disjoint: true
generation: {batch_size: 2, images_per_prompt: 1}
output: {shard_size: 4}
"""


def disjoint(prompts: str = many_prompts(30), extra: str = "", counts: str = "train: 40, val: 10, test: 10"):
    return plan_of(DISJOINT.replace("PROMPTS", prompts).replace("train: 40, val: 10, test: 10", counts) + extra)


def test_raising_a_count_moves_no_prompt_and_keeps_the_other_splits():
    recipe, before = disjoint()
    changed, after = disjoint(counts="train: 80, val: 10, test: 12")
    assert recipe.split_prompts("fox") == changed.split_prompts("fox")
    old, new = rows(before), rows(after)
    assert all(new[k] == v for k, v in old.items())  # every image made before is still planned, identical
    assert {s.key for s in before.shards_of("val")} == {s.key for s in after.shards_of("val")}


def test_adding_prompts_moves_none_of_the_old_ones():
    recipe, _ = disjoint()
    grown, _ = disjoint(many_prompts(30)[:-1] + ", " + many_prompts(20, offset=30)[1:])
    old, new = recipe.split_prompts("fox"), grown.split_prompts("fox")
    for split, prompts in old.items():
        assert [p for p in new[split] if p in recipe.prompts_of("fox")] == prompts


def test_a_share_change_moves_prompts_only_into_that_split():
    recipe, _ = disjoint(many_prompts(300))
    raised, _ = disjoint(many_prompts(300), "prompt_partition: {train: 1, val: 1, test: 2}\n")
    old, new = recipe.split_prompts("fox"), raised.split_prompts("fox")
    assert set(old["test"]) < set(new["test"])
    assert set(new["train"]) <= set(old["train"]) and set(new["val"]) <= set(old["val"])


def test_shares_are_followed_on_average_and_every_prompt_has_one_split():
    recipe, _ = disjoint(many_prompts(2000), "prompt_partition: {train: 0.8, val: 0.1, test: 0.1}\n")
    parts = recipe.split_prompts("fox")
    assert sorted(p for ps in parts.values() for p in ps) == sorted(recipe.prompts_of("fox"))
    assert 1500 < len(parts["train"]) < 1700 and 150 < len(parts["val"]) < 250 and 150 < len(parts["test"]) < 250
    assert recipe.prompt_shares() == pytest.approx({"train": 0.8, "val": 0.1, "test": 0.1})


@pytest.mark.parametrize("seed", range(20))
def test_every_split_gets_a_prompt_when_there_are_enough(seed: int):
    recipe, _ = plan_of(
        f"name: t\nseed: {seed}\nclasses: {{a: {{prompts: [x, y, z]}}}}\nsplits: {{a: 1, b: 1, c: 1}}\n"
        "prompt_disjoint: true\n"
    )
    assert sorted(map(len, recipe.split_prompts("a").values())) == [1, 1, 1]


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("prompt_partition: {train: 1, val: 1}", "prompt_partition: no share for split 'test'"),
        (
            "prompt_partition: {train: 1, val: 1, test: 1, tset: 1}",
            "prompt_partition.tset: not a split (the splits are train, val, test)",
        ),
        ("prompt_partition: {train: 1, val: 0, test: 1}", "prompt_partition.val: Input should be greater than 0"),
        ("prompt_partition: {train: 1, val: .nan, test: 1}", "prompt_partition.val: Input should be a finite number"),
    ],
)
def test_a_partition_names_every_split(extra: str, expected: str):
    with pytest.raises(RecipeError) as caught:
        disjoint(extra=extra + "\n")
    assert [p for p in caught.value.problems if p.startswith(expected)], caught.value.problems


def test_a_partition_needs_prompt_disjoint_and_a_prompt_per_split():
    text = "name: t\nclasses: {a: {prompts: [x, y]}}\nsplits: {train: 1, val: 1, test: 1}\n"
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text + "prompt_partition: {train: 1, val: 1, test: 1}\n")
    assert caught.value.problems == ["prompt_partition: only used with prompt_disjoint: true"]
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text + "prompt_disjoint: true\n")
    assert caught.value.problems == [
        "classes.a: prompt_disjoint needs at least one distinct prompt per split (3 splits) but the class has 2"
    ]


def test_dry_run_shows_the_partition(tmp_path):
    recipe, plan = disjoint(many_prompts(30), "prompt_partition: {train: 3, val: 1, test: 1}\n")
    text = describe(recipe, plan, OutputDir(tmp_path))
    assert "prompt-disjoint splits, each class's prompts partitioned in shares train 0.6, val 0.2, test 0.2" in text
    parts = recipe.split_prompts("fox")
    rows = [line.split() for line in text.splitlines() if line.startswith(("train ", "val ", "test "))]
    assert rows == [
        ["train", "fox", str(len(parts["train"])), "40"],
        [
            "val",
            "fox",
            *(["10", "of", str(len(parts["val"]))] if len(parts["val"]) > 10 else [str(len(parts["val"]))]),
            "10",
        ],
        [
            "test",
            "fox",
            *(["10", "of", str(len(parts["test"]))] if len(parts["test"]) > 10 else [str(len(parts["test"]))]),
            "10",
        ],
    ]


def test_ten_thousand_classes_plan_and_dry_run_in_seconds(tmp_path):
    classes = "".join(f"  c{i}: {{variables: {{subject: [thing {i}, other {i}]}}}}\n" for i in range(10_000))
    text = (
        "name: big\nmodel: {id: tiny-random}\n"
        "templates: ['a {style} of a {subject}']\nvariables: {style: [watercolor, sketch, photo]}\n"
        "splits: {train: 4, test: 2}\nprompt_disjoint: true\ngeneration: {batch_size: 2}\noutput: {shard_size: 2}\n"
        f"classes:\n{classes}"
    )
    start = time.monotonic()
    recipe = parse_recipe(text)
    plan = make_plan(recipe, content_fingerprint(recipe, "cpu", "float32"))
    table = describe(recipe, plan, OutputDir(tmp_path))
    assert time.monotonic() - start < 60  # about 5 s; quadratic steps made it 21 minutes
    assert len(plan.shards) == 30_000 and "c9999" in table


# -- the plan is arithmetic ----------------------------------------------------------------------------------------
def listed_plan(recipe, fingerprint) -> list[tuple[str, str, list[list[tuple]]]]:
    """The plan as it was first written: every image listed, prompts counted as they are used, then cut into
    batches and shards. The arithmetic plan must give the same images, batches, shards and keys."""
    shards = []
    for split in recipe.splits:
        per_shard = batches_per_shard(recipe, split)
        for name in recipe.class_names:
            prompts, used, jobs = recipe.split_prompts(name)[split], {}, []
            for index in range(recipe.splits[split]):
                prompt = prompts[(index // recipe.generation.images_per_prompt) % len(prompts)]
                used[prompt] = used.get(prompt, -1) + 1
                seed = derive_seed(recipe.seed, split, name, prompt, used[prompt])
                guidance = recipe.guidance_scale_of(name)
                jobs.append((f"{split}/{name}/{index:06d}", prompt, recipe.negative_prompt_of(name), guidance, seed))
            batches = [
                jobs[i : i + recipe.generation.batch_size] for i in range(0, len(jobs), recipe.generation.batch_size)
            ]
            for i in range(0, len(batches), per_shard):
                group = batches[i : i + per_shard]
                content = json.dumps([fingerprint, group], ensure_ascii=False, sort_keys=True).encode()
                shards.append((split, name, group, hashlib.sha256(content).hexdigest()[:24]))
    return shards


TRICKY = """
name: t
seed: 11
negative_prompt: 'blurry, "quoted" \\\\ back/slash, ünï'
templates: ["a {style} of a {subject}"]
variables: {style: [watercolor, sketch, photo, "oil \\"painting\\""]}
classes:
  fox: {variables: {subject: [red fox, kit fox]}, guidance_scale: 3}
  여우 é: {prompts: ["수채화 여우", "여우 사진", "tab\\there"], negative_prompt: "", templates: []}
splits: {train: 23, val: 5, test: 9}
generation: {batch_size: BATCH, images_per_prompt: PER_PROMPT}
output: {shard_size: SHARD}
"""


@pytest.mark.parametrize("fewest", [1, FEWEST_SHARDS])  # 1: shards of output.shard_size, however small the split
@pytest.mark.parametrize("disjoint", ["", "prompt_disjoint: true\n"])
@pytest.mark.parametrize("batch, per_prompt, shard", [(2, 2, 4), (3, 1, 7), (4, 3, 2), (1, 5, 1), (5, 2, 1000)])
def test_the_arithmetic_plan_lists_the_same_images_batches_shards_and_keys(
    disjoint, batch, per_prompt, shard, fewest, monkeypatch
):
    monkeypatch.setattr(plan_module, "FEWEST_SHARDS", fewest)
    text = TRICKY.replace("BATCH", str(batch)).replace("PER_PROMPT", str(per_prompt)).replace("SHARD", str(shard))
    recipe, plan = plan_of(text + disjoint)
    fingerprint = content_fingerprint(recipe, "cpu", "float32")
    listed = [
        (
            s.split,
            s.class_name,
            [[(j.id, j.prompt, j.negative_prompt, j.guidance_scale, j.seed) for j in b.jobs] for b in s.batches],
            s.key,
        )
        for s in plan.shards
    ]
    assert listed == listed_plan(recipe, fingerprint)
    assert all(j.label == recipe.class_names.index(s.class_name) for s in plan.shards for j in s.jobs)


def test_a_plan_of_chosen_shards_answers_like_the_whole_plan():
    """Export builds a Plan of the shards with rows; it must count, split and order them as the recipe's plan."""
    _, plan = plan_of(BASE + "prompt_disjoint: true\n")
    chosen = Plan(tuple(plan.shards))
    assert (chosen.num_images, chosen.splits, chosen.counts()) == (plan.num_images, plan.splits, plan.counts())
    assert all(list(chosen.shards_of(split)) == list(plan.shards_of(split)) for split in plan.splits)
    assert [s.key for s in plan.shards[-2:]] == [s.key for s in list(plan.shards)[-2:]]
    assert plan.shards[0] is plan.shards[0]  # made once, so each key is computed once
    travelled = pickle.loads(pickle.dumps(plan.shards[-1]))
    assert travelled == plan.shards[-1] and travelled.key == plan.shards[-1].key
    assert travelled.jobs == plan.shards[-1].jobs


def big_recipe(images: int, classes: int = 1000) -> str:
    per_class = images // classes
    names = "".join(f"  c{i}: {{variables: {{subject: [thing {i}, other {i}, more {i}]}}}}\n" for i in range(classes))
    return (
        "name: big\nmodel: {id: tiny-random}\n"
        "templates: ['a {style} of a {subject}']\nvariables: {style: [watercolor, sketch, photo]}\n"
        f"splits: {{train: {per_class * 8 // 10}, val: {per_class // 10}, test: {per_class // 10}}}\n"
        f"prompt_disjoint: true\nclasses:\n{names}"
    )


def test_ten_million_images_are_planned_in_under_two_seconds_and_50_mb():
    recipe = parse_recipe(big_recipe(10**7))
    fingerprint = content_fingerprint(recipe, "cpu", "float32")
    start = time.perf_counter()
    plan = make_plan(recipe, fingerprint)
    shards = list(plan.shards)  # every shard made, as a build's resume check makes them
    seconds = time.perf_counter() - start
    tracemalloc.start()
    plan = make_plan(recipe, fingerprint)
    shards = list(plan.shards)
    counts = plan.counts()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert plan.num_images == 10**7 == sum(s.size for s in shards) == sum(sum(c.values()) for c in counts.values())
    assert len(shards) == 1000 * (8000 // 256 + 1 + 2 * (1000 // 256 + 1))
    assert seconds < 2, seconds
    assert peak < 50e6, peak
    assert len(shards[-1].jobs) == shards[-1].size == 1000 - 3 * 256  # a shard's jobs, computed when asked for


def test_a_dry_run_of_a_hundred_million_images_computes_no_job_and_no_key(tmp_path, monkeypatch):
    for method in ("jobs", "key"):
        monkeypatch.setattr(JobSource, method, lambda *_: pytest.fail("the dry run enumerated the plan"))
    recipe = parse_recipe(big_recipe(10**8))
    start = time.perf_counter()
    text = describe(recipe, make_plan(recipe, content_fingerprint(recipe, "cpu", "float32")), OutputDir(tmp_path))
    assert time.perf_counter() - start < 30  # about 1 s, most of it the table's 3,000 rows of prompts
    assert text.startswith("recipe 'big': 100000000 images, 393000 shards of up to 256 images, batches of 8")
    assert "already finished in" in text and ": 0 images; to make: 100000000" in text


def test_a_dry_run_counts_the_finished_shards(tmp_path):
    recipe = handmade_recipe()
    store, plan, _ = write_shards(recipe, tmp_path)
    text = describe(recipe, plan, store)
    assert f"already finished in {store.root}: {plan.num_images} images; to make: 0" in text


# -- shard sizes: small splits get small shards, so N processes share them evenly ----------------------------------
FOX_DOG = (
    (Path(__file__).resolve().parents[1] / "recipes" / "fox_dog.yaml")
    .read_text(encoding="utf-8")
    .replace("  dtype: auto", "  pipeline: StableDiffusionPipeline\n  dtype: auto")  # its family, as the build records
)


def test_fox_dog_is_made_in_one_batch_shards(tmp_path):
    """fox_dog (batches of 8, output.shard_size 256) was 4 shards of 100, 100, 20 and 20 images: 2 processes ran
    1.2x faster than one. Its 32 batches are now 32 shards, and the dry run says so."""
    recipe, plan = plan_of(FOX_DOG)
    assert len(plan.shards) == 32 and {len(s.batches) for s in plan.shards} == {1}
    assert [s.size for s in plan.shards_of("train")[:13]] == [8] * 12 + [4]
    assert f"{plan.num_images} images, 32 shards of up to 8 images, batches of 8" in describe(
        recipe, plan, OutputDir(tmp_path)
    )


def with_splits(splits: str, batch: int = 8, shard: int = 256) -> str:
    return (
        BASE.replace("splits: {train: 6, test: 3}", f"splits: {splits}")
        .replace("generation: {batch_size: 2, images_per_prompt: 2}", f"generation: {{batch_size: {batch}}}")
        .replace("output: {shard_size: 4}", f"output: {{shard_size: {shard}}}")
    )


@pytest.mark.parametrize(
    "images_per_class, expected",
    [
        (8 * 32 * 32, 32),  # 2 classes x 1024 batches: 64 full shards of 32 batches, kept
        (8 * 32 * 32 - 8, 16),  # one batch fewer per class: halved
        (8 * 500, 8),  # 1000 batches: 125 shards of 8 batches
        (8 * 31, 1),  # 62 batches: one batch each
        (1, 1),
    ],
)
def test_a_split_of_fewer_than_64_full_shards_gets_halved_shards(images_per_class: int, expected: int):
    recipe = parse_recipe(with_splits(f"{{train: {images_per_class}}}"))
    assert batches_per_shard(recipe, "train") == expected
    plan = make_plan(recipe, content_fingerprint(recipe, "cpu", "float32"))
    assert len(plan.shards) >= min(FEWEST_SHARDS, 2 * -(-images_per_class // 8))
    assert max(s.stop - s.start for s in plan.shards) == min(expected * 8, images_per_class)


def test_shard_sizes_are_per_split_and_stable_within_a_doubling():
    """Adding a split never changes another split's shards; raising a count keeps a split's shard size (so its
    finished shards are reused) until its batches cross a doubling."""
    base = parse_recipe(with_splits("{train: 2400, test: 80}"))  # train: 600 batches, test: 20
    more = parse_recipe(with_splits("{train: 3200, test: 80, val: 400}"))  # train: 800 batches
    assert [batches_per_shard(r, "train") for r in (base, more)] == [8, 8]
    assert [batches_per_shard(r, "test") for r in (base, more)] == [1, 1]
    shards = lambda recipe: make_plan(recipe, content_fingerprint(recipe, "cpu", "float32")).shards  # noqa: E731
    full = {s.key for s in shards(base) if len(s.batches) == 8 or s.split == "test"}
    assert len(full) == 2 * 37 + 20 and full <= {s.key for s in shards(more)}
