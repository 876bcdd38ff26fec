"""Pushes that succeed, against a real Hub-compatible server on 127.0.0.1 (``tests/hubserver.py``): huggingface_hub's
own create_repo, streamed upload and commits run for real; what reaches the "Hub" is compared byte for byte with
the export. Uploads while a build runs (``hub.push_during_build``), a Hub outage during them, a resumed build, and a
chunked export read back with ``load_dataset`` from the repo's files."""

from __future__ import annotations

import time
from pathlib import Path

import datasets
import pytest

from builders.hub import push_dataset, with_push_target
from builders.recipe import RecipeError
from synthcore.hub import BUILDING, BuildingUploader, uploads_while_building
from tests import handmade, hubserver
from tests.handmade import handmade_recipe, write_shards
from tests.helpers import run_build, write_recipe

REPO = "someone/handmade"


@pytest.fixture()
def hub(monkeypatch):
    with hubserver.running() as server:
        hubserver.serving(server, monkeypatch)
        yield server


def built(tmp_path: Path, extra: str = "", max_files: int = 10_000):
    recipe = handmade_recipe(extra)
    store, plan, provenance = write_shards(recipe, tmp_path / "out")
    handmade.export(recipe, store, plan, provenance, max_files)
    return with_push_target(recipe, REPO, False), store


def local_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).as_posix().startswith(".synthdata/")
    }


def test_a_push_sends_every_file_and_removes_what_an_earlier_build_left(hub, tmp_path: Path):
    recipe, store = built(tmp_path)
    hub.repos[REPO] = hubserver.Repo(private=False)
    hub.repos[REPO].files |= {"data/train-00009-of-00010.parquet": b"old", f"{BUILDING}/abc.parquet": b"shard"}
    url = push_dataset(store.root, recipe)
    assert url == f"{hub.url}/datasets/{REPO}"
    pushed, local = hub.files(REPO), local_files(store.root)
    assert pushed == local  # byte for byte, the stale file and building/ gone, nothing of .synthdata/
    assert REPO in pushed["README.md"].decode()  # the card names the repo it went to (and is saved locally)


def test_a_chunked_export_on_the_hub_is_read_whole_by_load_dataset(hub, tmp_path: Path):
    recipe, store = built(tmp_path, max_files=4)
    push_dataset(store.root, recipe)
    copy = tmp_path / "from-the-hub"
    for name, data in hub.files(REPO).items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(data)
    assert "data/train/00001/train-00004-of-00006.parquet" in hub.files(REPO)
    loaded = datasets.load_dataset(str(copy))
    assert {split: ds.num_rows for split, ds in loaded.items()} == {"train": 12, "test": 6}


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_finished_shards_go_to_building_while_the_build_runs_and_the_final_push_replaces_them(hub, tmp_path: Path):
    recipe = handmade_recipe()
    shards = tmp_path / "out" / ".synthdata" / "shards"
    with uploads_while_building(shards, REPO, "dataset", private=True, interval=0.05) as uploader:
        store, plan, provenance = write_shards(recipe, tmp_path / "out")
        wait_for(lambda: len(uploader.uploaded or ()) == len(plan.shards))
    assert hub.repos[REPO].private and not uploader.is_alive()
    building = {name: data for name, data in hub.files(REPO).items() if name.startswith(f"{BUILDING}/")}
    made = {f"{BUILDING}/{shard.key}.parquet": store.shard_path(shard).read_bytes() for shard in plan.shards}
    assert building == made
    handmade.export(recipe, store, plan, provenance)
    push_dataset(store.root, with_push_target(recipe, REPO, True))
    assert hub.files(REPO) == local_files(store.root)  # building/ replaced by the dataset


def test_a_hub_outage_during_the_build_is_retried_and_a_resumed_build_sends_nothing_twice(hub, tmp_path: Path):
    recipe = handmade_recipe()
    store, plan, _ = write_shards(recipe, tmp_path / "out")
    hub.fail_commits = 2
    uploader = BuildingUploader(store.shards, REPO, "dataset", private=False, interval=0.05)
    uploader.start()
    wait_for(lambda: len(uploader.uploaded or ()) == len(plan.shards))
    uploader.stop()
    assert hub.fail_commits == 0 and uploader.commits == 1
    commits = len(hub.repos[REPO].commits)
    again = BuildingUploader(store.shards, REPO, "dataset", private=False, interval=0.05)
    again.upload_round()  # a resumed build: the shards are in building/ already
    assert again.commits == 0 and len(hub.repos[REPO].commits) == commits


def test_push_during_build_needs_a_repo_and_an_interval_above_zero():
    recipe = handmade_recipe("hub: {push_during_build: true}\n")
    with pytest.raises(ValueError, match="hub.push_during_build needs a repo to push to"):
        with_push_target(recipe, None, False)
    assert with_push_target(recipe, REPO, False).hub.push_during_build
    with pytest.raises(RecipeError, match="hub.upload_interval"):
        handmade_recipe("hub: {repo_id: a/b, push_during_build: true, upload_interval: 0}\n")


@pytest.mark.e2e
def test_a_build_with_push_during_build_uploads_shards_then_the_dataset(tmp_path: Path):
    text = (Path(__file__).parents[1] / "recipes" / "smoke.yaml").read_text(encoding="utf-8")
    recipe = write_recipe(tmp_path, text + "\nhub: {push_during_build: true, upload_interval: 0.2}\n")
    with hubserver.running() as server:
        env = {"HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": hubserver.TOKEN}
        out = str(tmp_path / "out")
        result = run_build(str(recipe), "--output-dir", out, "--push-to-hub", "someone/smoke", env=env)
        pushed, commits = server.files("someone/smoke"), server.repos["someone/smoke"].commits
    assert "dataset pushed to" in result.stdout
    assert any(c.startswith("Building: ") for c in commits)  # shards went up while the build ran
    assert pushed == local_files(tmp_path / "out")  # and the dataset replaced them
