"""Object storage: ``--output-dir s3://bucket/prefix`` against a real S3 server on 127.0.0.1 (moto's server mode).

Nothing of the client is mocked: s3fs talks HTTP to the server the test starts. The fast tests check the store's
rules in process (ownership, the lock, publishing); the end-to-end ones run ``build.py`` and ``accelerate launch``
into the store and read the result back with ``load_dataset`` in a process that imports nothing of ours.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from builders.cli import main
from builders.export import BUILD_OUTPUT
from builders.store import output_store
from builders.store.remote_dir import RemoteDir, check_remote, remote_lock
from synthcore.outdir import OutputDirError, Owner
from tests.helpers import (
    ACCELERATE,
    ROOT,
    SAME_THREADS,
    SCALE_RECIPE,
    build_here,
    run_build,
    run_main,
    s3_server,
    table,
    write_recipe,
)

SHARDS = 8
_buckets = itertools.count()


class S3:
    """The test's S3 server: the environment a client needs to reach it, and an s3fs client of our own."""

    def __init__(self, env: dict[str, str], fs):
        self.env = env
        self.endpoint = env["AWS_ENDPOINT_URL"]
        self.fs = fs

    def bucket(self) -> str:
        """A new empty bucket's URL, with a prefix inside it."""
        name = f"bucket-{os.getpid()}-{next(_buckets)}"
        self.fs.mkdir(name)
        return f"s3://{name}/datasets/remote"

    def files(self, url: str) -> dict[str, int]:
        base = url.removeprefix("s3://")
        return {k[len(base) + 1 :]: v["size"] for k, v in self.fs.find(base, detail=True).items()}

    def json(self, url: str) -> dict:
        return json.loads(self.fs.cat_file(url.removeprefix("s3://")))

    def table(self, url: str, into: Path) -> dict[str, list]:
        """The rows of the export at ``url`` (``test_distributed.table``), its data/ fetched ``into`` a directory."""
        for name in (n for n in self.files(url) if n.startswith("data/")):
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(f"{url.removeprefix('s3://')}/{name}", str(into / name))
        return table(into)


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3:
    with s3_server() as (env, fs), pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setenv("SYNTHDATA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield S3(env, fs)


# -- the store's rules, in process (fast) ---------------------------------------------------------------------------
def test_a_prefix_not_made_by_synthdata_is_refused(s3: S3):
    url = s3.bucket()
    s3.fs.pipe_file(f"{url.removeprefix('s3://')}/notes.txt", b"mine")
    with pytest.raises(OutputDirError, match="not made by synthdata"):
        check_remote(RemoteDir(url), BUILD_OUTPUT)
    assert s3.files(url) == {"notes.txt": 4}


def test_a_file_under_our_names_that_we_did_not_write_is_refused(s3: S3):
    url = s3.bucket()
    remote = RemoteDir(url)
    remote.write_owner(Owner("build.py", frozenset({"data/train-00000-of-00001.parquet"})))
    remote.write_text("data/train-00000-of-00001.parquet", "ours")
    remote.write_text("data/notes.txt", "theirs")
    with pytest.raises(OutputDirError, match="data/notes.txt"):
        check_remote(remote, BUILD_OUTPUT)
    remote.remove(["data/notes.txt"])
    assert "data/train-00000-of-00001.parquet" in check_remote(remote, BUILD_OUTPUT)


def test_a_missing_bucket_is_named(s3: S3):
    with pytest.raises(OutputDirError, match="no bucket 'no-such-bucket'"):
        check_remote(RemoteDir("s3://no-such-bucket/x"), BUILD_OUTPUT)


def test_one_build_at_a_time_by_a_conditional_create(s3: S3):
    remote = RemoteDir(s3.bucket())
    with remote_lock(remote):
        assert remote.read_text(".synthdata/lock").split("\n")[0] == str(os.getpid())
        with pytest.raises(OutputDirError, match=f"process {os.getpid()}"), remote_lock(remote):
            pass
    assert remote.read_text(".synthdata/lock") is None, "released at the end"
    remote.write_text(".synthdata/lock", "999999999\nanother-host\n")
    with pytest.raises(OutputDirError, match="another-host.*delete s3://"), remote_lock(remote):
        pass


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over(s3: S3):
    import socket

    remote = RemoteDir(s3.bucket())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    remote.write_text(".synthdata/lock", f"{dead.stdout.strip()}\n{socket.gethostname()}\n")
    with remote_lock(remote):
        assert remote.read_text(".synthdata/lock").split("\n")[0] == str(os.getpid())


def test_an_export_replaces_the_last_one_in_the_store_and_leaves_foreign_files(s3: S3, tmp_path: Path):
    """Publishing puts every file whole, deletes only files of the last export that the new one lacks, and the
    owner marker names exactly what is there; a file of someone else's beside our names is never touched."""
    url = s3.bucket()
    store = output_store(url, 0, BUILD_OUTPUT)

    def export(files: dict[str, str]) -> None:
        with store.claim(BUILD_OUTPUT, keep=lambda: False) as owned, owned.staging() as stage:
            for name, text in files.items():
                (stage / name).parent.mkdir(parents=True, exist_ok=True)
                (stage / name).write_text(text)
            owned.publish(stage)

    export({"README.md": "v1", "data/train-00000-of-00002.parquet": "a", "data/train-00001-of-00002.parquet": "b"})
    s3.fs.pipe_file(f"{url.removeprefix('s3://')}/notes.txt", b"theirs")  # not under our names: allowed, kept
    export({"README.md": "v2", "data/train-00000-of-00001.parquet": "ab"})
    files = {name for name in s3.files(url) if not name.startswith(".synthdata/")}
    assert files == {"README.md", "data/train-00000-of-00001.parquet", "notes.txt"}
    assert s3.fs.cat_file(f"{url.removeprefix('s3://')}/README.md") == b"v2"
    assert set(s3.json(f"{url}/.synthdata/owner.json")["files"]) == files - {"notes.txt"}
    assert ".synthdata/lock" not in s3.files(url)


def test_a_push_from_the_store_is_refused_before_anything_is_built(s3: S3):
    url = s3.bucket()
    result = run_main(main, "recipes/smoke.yaml", "--output-dir", url, "--push-to-hub", "user/name")
    assert result.returncode == 2 and "not supported yet" in result.stderr and "--push-only" in result.stderr
    assert s3.files(url) == {}


class Requests:
    """How often a process's ``RemoteDir`` asked the store: its client's calls counted on the way through (the
    requests still go to the server)."""

    def __init__(self, remote: RemoteDir):
        self.calls: list[str] = []
        for name in ("sizes", "read_text"):
            self._count(remote, name)

    def _count(self, remote: RemoteDir, name: str) -> None:
        real = getattr(remote, name)

        def counted(*args, **kwargs):
            self.calls.append(name)
            return real(*args, **kwargs)

        setattr(remote, name, counted)


def test_done_shards_cost_a_listing_not_a_request_each(s3: S3, tmp_path: Path):
    """The start-up check answers from one listing; a process that reaches shards another finished since it
    listed finds them exactly (one request), then lists again instead of asking about each of the rest."""
    from builders.plan import make_plan
    from builders.recipe import parse_recipe
    from builders.store.remote import SHARDS as SHARDS_DIR

    url = s3.bucket()
    shards = list(make_plan(parse_recipe(SCALE_RECIPE.replace("COUNT", "40")), {}).shards)
    main, other = (output_store(url, rank, BUILD_OUTPUT) for rank in (0, 1))
    finished_before, finished_since = shards[:10], shards[10:30]

    def finish(shard) -> None:  # as a process commits a shard: its .parquet, then its .json record
        for suffix in (".parquet", ".json"):
            other.remote.write_text(f"{SHARDS_DIR}/{shard.key}{suffix}", "{}")

    for shard in finished_before:
        finish(shard)
    asked = Requests(main.remote)
    pending = [shard for shard in shards if not main.done(shard)]
    assert pending == shards[10:] and asked.calls == ["sizes"], "the start-up check: one listing"

    for shard in finished_since:
        finish(shard)
    assert [main.done(shard) for shard in finished_since] == [False] * len(finished_since)
    assert all(main.done(shard, fresh=True) for shard in finished_since), "exact after a claim"
    assert not any(main.done(shard, fresh=True) for shard in shards[30:])
    assert asked.calls.count("sizes") == 2 and asked.calls.count("read_text") == 1 + len(shards[30:])
    assert all(main.done(shard) for shard in finished_since), "the new listing has them"


# -- builds into the store (end to end) -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(s3: S3, scale_recipe: Path) -> str:
    url = s3.bucket()
    build_here(str(scale_recipe), "--output-dir", url, env={**s3.env, **SAME_THREADS})
    return url


@pytest.mark.e2e
def test_build_to_s3_gives_the_local_dataset(s3: S3, built: str, scale_build: Path, tmp_path: Path):
    files = s3.files(built)
    assert {"README.md", "recipe.yaml", "build_info.json", "summary.json", ".synthdata/fingerprint.json"} <= set(files)
    assert ".synthdata/lock" not in files, "the lock is released"
    owner = s3.json(f"{built}/.synthdata/owner.json")
    assert owner["tool"] == "build.py" and {f for f in files if not f.startswith(".synthdata/")} == set(owner["files"])
    assert sum(name.endswith(".parquet") for name in files if name.startswith(".synthdata/shards/")) == SHARDS
    report = s3.json(f"{built}/.synthdata/run.json")
    assert (report["images_found_done"], report["images_generated"]) == (0, 16)
    assert s3.table(built, tmp_path) == table(scale_build)


@pytest.mark.e2e
def test_load_dataset_reads_the_store(s3: S3, built: str):
    """In a fresh process that imports nothing of ours, online (the only server is the test's)."""
    script = textwrap.dedent(
        f"""
        import json, datasets
        options = {{"client_kwargs": {{"endpoint_url": {s3.endpoint!r}}}, "key": "testing", "secret": "testing"}}
        files = {{split: "{built}/data/" + split + "-*.parquet" for split in ("train", "test")}}
        ds = datasets.load_dataset("parquet", data_files=files, storage_options=options)
        print(json.dumps({{s: [ds[s].num_rows, ds[s].features["label"].names, ds[s][0]["image"].size] for s in ds}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd="/", env=env, capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "train": [12, ["fox", "dog"], [32, 32]],
        "test": [4, ["fox", "dog"], [32, 32]],
    }


@pytest.mark.e2e
def test_a_different_recipe_into_the_same_prefix_is_refused(s3: S3, built: str, scale_recipe: Path, tmp_path: Path):
    before = s3.files(built)
    changed = write_recipe(
        tmp_path, scale_recipe.read_text().replace("num_inference_steps: 2", "num_inference_steps: 3")
    )
    result = run_main(main, str(changed), "--output-dir", built)  # the s3 fixture's environment reaches the store
    assert result.returncode == 2
    assert "generation.num_inference_steps: 2 -> 3" in result.stderr and "--overwrite" in result.stderr
    assert s3.files(built) == before


@pytest.mark.e2e
def test_dry_run_counts_the_stores_shards_and_names_a_missing_bucket(s3: S3, built: str, scale_recipe: Path):
    result = run_main(main, str(scale_recipe), "--dry-run", "--output-dir", built)
    assert result.returncode == 0, result.stderr
    assert f"already finished in {built}: 16 images; to make: 0" in result.stdout
    missing = run_main(main, str(scale_recipe), "--dry-run", "--output-dir", "s3://no-such-bucket/x")
    assert missing.returncode == 5 and "there is no bucket 'no-such-bucket'" in missing.stderr


@pytest.mark.e2e
def test_killed_build_resumes_from_the_store(s3: S3, scale_recipe: Path, scale_build: Path, tmp_path: Path):
    url = s3.bucket()
    shards = f"{url.removeprefix('s3://')}/.synthdata/shards"

    def finished() -> int:
        return sum(name.endswith(".json") for name in s3.fs.ls(shards)) if s3.fs.exists(shards) else 0

    process = subprocess.Popen(
        [sys.executable, str(ROOT / "build.py"), str(scale_recipe), "--output-dir", url],
        cwd=ROOT,
        env={**os.environ, **s3.env, **SAME_THREADS, "SYNTHDATA_CACHE": str(tmp_path / "node-a")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 180
    while not finished() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = finished()
    assert 0 < done < SHARDS, "the kill must land mid-way"
    assert ".synthdata/lock" in s3.files(url), "a killed build leaves its lock"

    # Resumed on another machine (an empty local copy): only the store is shared.
    build_here(
        str(scale_recipe), "--output-dir", url, env={**s3.env, **SAME_THREADS, "SYNTHDATA_CACHE": str(tmp_path / "b")}
    )
    report = s3.json(f"{url}/.synthdata/run.json")
    assert (report["images_found_done"], report["images_generated"]) == (done * 2, 16 - done * 2)
    assert s3.table(url, tmp_path / "export") == table(scale_build)


@pytest.mark.e2e
def test_two_processes_write_to_the_store_and_give_the_local_dataset(
    s3: S3, scale_recipe: Path, scale_build: Path, tmp_path: Path
):
    url = s3.bucket()
    run_build(
        str(scale_recipe),
        "--output-dir",
        url,
        env={**s3.env, **SAME_THREADS},
        launcher=[*ACCELERATE, "--num_processes", "2"],
    )
    report = s3.json(f"{url}/.synthdata/run.json")
    assert report["processes"] == 2 and sum(report["shards_per_process"]) == SHARDS
    assert all(report["shards_per_process"]), "every process must write shards of its own"
    assert s3.table(url, tmp_path / "export") == table(scale_build)


@pytest.mark.e2e
def test_a_damaged_shard_in_the_store_is_set_aside_and_made_again(
    s3: S3, built: str, scale_recipe: Path, scale_build: Path, tmp_path: Path
):
    """A flipped byte in the store, found by the SHA-256 check of the export on another machine; the store heals."""
    victim = sorted(n for n in s3.files(built) if n.startswith(".synthdata/shards/") and n.endswith(".parquet"))[0]
    key = f"{built.removeprefix('s3://')}/{victim}"
    data = bytearray(s3.fs.cat_file(key))
    data[len(data) // 2] ^= 0xFF
    s3.fs.pipe_file(key, bytes(data))
    build_here(
        str(scale_recipe), "--output-dir", built, env={**s3.env, **SAME_THREADS, "SYNTHDATA_CACHE": str(tmp_path)}
    )
    assert s3.json(f"{built}/.synthdata/run.json")["damaged_shards"] == [Path(victim).stem]
    assert s3.files(built)[f".synthdata/damaged/{Path(victim).name}"] == len(data), "set aside, never deleted"
    assert s3.table(built, tmp_path / "export") == table(scale_build)
