"""Levers for diversity through real builds (tiny random models, CPU): a guidance sweep's rows record their guidance
and each regenerates alone with plain diffusers; prompt expansion writes its lock once, and reruns, resumes and
rebuilds from ``recipe.yaml`` reuse it; a lock that does not match is refused; a missing language model is exit 4."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from builders.cli import main
from builders.expansion import read_lock
from builders.plan import make_plan
from builders.recipe import load_recipe
from builders.store.prompt_lock import PROMPT_LOCK, read_prompt_lock
from synthcore.model_refs import resolve
from tests.helpers import build_here, run_build, run_main, write_recipe

RECIPE = """
name: levers
seed: 3
model: {id: tiny-random, safety_checker: false}
generation: {guidance_scale: [1.5, 4.0, 7.5], num_inference_steps: 2, height: 32, width: 32, batch_size: 4,
             images_per_prompt: 1}
negative_prompt: blurry
templates: ["a {a} {b} {c}"]
variables: {a: [v0, v1, v2, v3, v4, v5, v6, v7, v8, v9], b: [w0, w1, w2, w3, w4, w5, w6, w7, w8, w9],
            c: [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9]}
template_samples: 2
classes:
  fox: {prompts: [a red fox]}
  dog: {templates: [], prompts: [a dog], guidance_scale: 2.0}
prompt_expansion: {model: tiny-random, per_class: 2, max_new_tokens: 8}
splits: {train: 6, test: 2}
output: {shard_size: 4}
scoring: {clip: {model: tiny-random}, resnet50: {enabled: false}}
"""
COLUMNS = ["id", "prompt", "negative_prompt", "guidance_scale", "seed"]


def rows(out: Path, columns: list[str] = COLUMNS) -> dict[str, list]:
    table = pq.read_table(sorted((out / "data").glob("*.parquet")), columns=columns).to_pydict()
    order = sorted(range(len(table["id"])), key=table["id"].__getitem__)
    return {name: [values[i] for i in order] for name, values in table.items()}


def run_report(out: Path) -> dict:
    return json.loads((out / ".synthdata" / "run.json").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The recipe, and its dataset built once with ``python build.py``."""
    directory = tmp_path_factory.mktemp("levers")
    recipe = write_recipe(directory, RECIPE)
    build_here(str(recipe), "--output-dir", str(directory / "out"))
    return recipe, directory / "out"


@pytest.mark.e2e
def test_a_sweep_records_each_rows_guidance_as_planned(built):
    _, out = built
    stored = load_recipe(out / "recipe.yaml")  # the lock's prompts are recorded in it
    planned = {job.id: job for shard in make_plan(stored, {}).shards for job in shard.jobs}
    data = rows(out)
    assert sorted(planned) == data["id"]
    for i, job_id in enumerate(data["id"]):
        job = planned[job_id]
        assert (data["prompt"][i], data["guidance_scale"][i], data["seed"][i]) == (
            job.prompt,
            job.guidance_scale,
            job.seed,
        )
    fox = {g for i, g in zip(data["id"], data["guidance_scale"]) if "/fox/" in i}
    assert fox == {1.5, 4.0, 7.5} and {g for i, g in zip(data["id"], data["guidance_scale"]) if "/dog/" in i} == {2.0}
    expanded = stored.prompt_expansion.prompts
    assert set(expanded) == {"fox", "dog"} and all(len(p) == 2 for p in expanded.values())
    assert set(data["prompt"]) & {p for ps in expanded.values() for p in ps}  # the model's prompts made images
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "prompt_expansion:" in card and expanded["fox"][0] in card  # recipe.yaml (with the lock) is in the card
    assert read_lock(read_prompt_lock(out)) == (stored.prompt_expansion.settings(), expanded)


@pytest.mark.e2e
def test_a_swept_row_regenerates_alone_with_plain_diffusers_at_its_guidance(built):
    from diffusers import StableDiffusionPipeline

    _, out = built
    data = rows(out, [*COLUMNS, "image"])
    pipe = StableDiffusionPipeline.from_pretrained(resolve("tiny-random", "sd"), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    checked = set()
    for i, job_id in enumerate(data["id"]):
        if "/fox/" not in job_id or data["guidance_scale"][i] in checked:
            continue
        checked.add(data["guidance_scale"][i])
        alone = pipe(
            data["prompt"][i],
            negative_prompt=data["negative_prompt"][i],
            guidance_scale=data["guidance_scale"][i],
            generator=torch.Generator().manual_seed(data["seed"][i]),
            num_inference_steps=2,
            height=32,
            width=32,
            output_type="np",
        ).images[0]
        kept = np.asarray(Image.open(io.BytesIO(data["image"][i]["bytes"]))).astype(int)
        assert np.abs((alone * 255).round().astype(int) - kept).max() <= 1, job_id
    assert checked == {1.5, 4.0, 7.5}


@pytest.mark.e2e
def test_reruns_resumes_and_rebuilds_reuse_the_lock(built, tmp_path: Path):
    recipe, out = built
    lock = (out / PROMPT_LOCK).read_bytes()
    before = rows(out)
    build_here(str(recipe), "--output-dir", str(out))  # a rerun: everything found done, the same prompts
    assert run_report(out)["images_generated"] == 0 and (out / PROMPT_LOCK).read_bytes() == lock

    shards = out / ".synthdata" / "shards"
    gone = sorted(shards.glob("*.parquet"))[0]  # a resume: one shard to make again, from the locked prompts
    size = pq.ParquetFile(gone).metadata.num_rows
    gone.unlink()
    gone.with_suffix(".json").unlink()
    build_here(str(recipe), "--output-dir", str(out))
    assert (run_report(out)["images_generated"], rows(out)) == (size, before)
    assert gone.exists() and (out / PROMPT_LOCK).read_bytes() == lock

    again = tmp_path / "again"  # a rebuild from the dataset's recipe.yaml: no language model runs
    build_here(str(out), "--output-dir", str(again))
    assert rows(again) == before and (again / PROMPT_LOCK).read_bytes() == lock


@pytest.mark.e2e
def test_a_lock_of_other_settings_is_refused_and_overwrite_writes_it_again(built, tmp_path: Path):
    recipe, out = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    changed = write_recipe(tmp_path, RECIPE.replace("max_new_tokens: 8", "max_new_tokens: 6"))
    refused = run_main(main, str(changed), "--output-dir", str(copy))
    assert refused.returncode == 2, refused.stderr
    assert f"{copy / PROMPT_LOCK} was written under other prompt_expansion settings" in refused.stderr
    assert "max_new_tokens: 8 there, 6 in the recipe" in refused.stderr and "--overwrite" in refused.stderr
    build_here(str(changed), "--output-dir", str(copy), "--overwrite")
    settings, prompts = read_lock(read_prompt_lock(copy))
    assert settings["max_new_tokens"] == 6 and load_recipe(copy / "recipe.yaml").prompt_expansion.prompts == prompts


def test_a_missing_language_model_is_exit_4_before_anything_is_made(tmp_path: Path):
    recipe = write_recipe(tmp_path, RECIPE.replace("{model: tiny-random, per_class", "{model: nobody/no-lm, per_class"))
    result = run_main(main, str(recipe), "--output-dir", str(tmp_path / "out"))  # HF_HUB_OFFLINE: conftest
    assert result.returncode == 4, result.stderr
    assert "prompt_expansion.model" in result.stderr and "nobody/no-lm" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_two_processes_write_one_lock_and_build_what_one_process_builds(built, tmp_path: Path):
    from tests.helpers import ACCELERATE

    recipe, out = built
    two = tmp_path / "two"
    run_build(str(recipe), "--output-dir", str(two), launcher=[*ACCELERATE, "--num_processes", "2"])
    assert run_report(two)["processes"] == 2
    assert (two / PROMPT_LOCK).read_bytes() == (
        out / PROMPT_LOCK
    ).read_bytes()  # the same seeded sampling, written once
    assert rows(two) == rows(out)
