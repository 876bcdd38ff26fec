"""The prompt lock is a file of the output, read where the output lives: with ``prompt_expansion`` and an output in
object storage (a real S3 server on 127.0.0.1, moto's server mode), a second run reads the lock from the store, needs
no language model and remakes nothing. (A process's local copy of a store starts without the export's files, the
lock among them: read from there, the second run would have the language model write the prompts again.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import run_build, s3_server, write_recipe

pytestmark = pytest.mark.e2e

RECIPE = """
name: locked-in-a-store
seed: 5
model: {id: tiny-random, safety_checker: false}
generation: {num_inference_steps: 2, height: 32, width: 32, batch_size: 2, images_per_prompt: 1}
classes:
  fox: {prompts: [a red fox]}
  dog: {prompts: [a dog]}
prompt_expansion: {model: LANGUAGE_MODEL, per_class: 2, max_new_tokens: 8}
splits: {train: 2}
output: {shard_size: 2}
scoring: {clip: {enabled: false}, resnet50: {enabled: false}}
"""


@pytest.fixture
def s3_env(tmp_path: Path):
    """A bucket on a fresh S3 server: the environment a build needs to reach it, and a client of our own."""
    with s3_server() as (env, fs):
        fs.mkdir("bucket")
        yield {**env, "SYNTHDATA_CACHE": str(tmp_path / "cache")}, fs  # the processes' local copies start empty


def test_a_rerun_into_a_store_reads_the_lock_there_and_remakes_nothing(s3_env, tmp_path: Path):
    from synthcore.tiny import tiny_language_model_dir

    env, fs = s3_env
    language_model = tmp_path / "language-model"  # a copy the second run cannot load: its weights are gone by then
    shutil.copytree(tiny_language_model_dir(), language_model)
    recipe = write_recipe(tmp_path, RECIPE.replace("LANGUAGE_MODEL", str(language_model)))
    url = "s3://bucket/datasets/expanded"

    run_build(str(recipe), "--output-dir", url, env=env)
    first = {name: fs.cat_file(f"bucket/datasets/expanded/{name}") for name in ("prompts.lock.yaml", "recipe.yaml")}
    shards = sorted(fs.find("bucket/datasets/expanded/.synthdata/shards"))
    for weights in language_model.glob("*.safetensors"):
        weights.unlink()

    again = run_build(str(recipe), "--output-dir", url, env=env, check=False)
    assert again.returncode == 0, again.stderr
    report = json.loads(fs.cat_file("bucket/datasets/expanded/.synthdata/run.json"))
    assert (report["images_generated"], report["images_found_done"]) == (0, report["images_planned"])
    assert report["images_planned"] == 4 and sorted(fs.find("bucket/datasets/expanded/.synthdata/shards")) == shards
    for name, content in first.items():
        assert fs.cat_file(f"bucket/datasets/expanded/{name}") == content, f"{name} changed"
