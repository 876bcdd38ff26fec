"""Faults on the command lines, as a user meets them: damaged shards, directories that are not ours, links, SIGTERM,
a full disk, two builds at once, a missing dataset. Each ends in one message and a documented exit code, loses
nothing, and leaves nothing that blocks the retry (the in-process logic is tested in test_outdir.py)."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders.cli import main as build
from eval.standalone import main as evaluate
from synthcore.faults import OUTPUT_REFUSED, WRITE_FAILED
from synthcore.outdir import LOCK_FILE, WORK_DIR
from tests.helpers import (
    ACCELERATE,
    ROOT,
    SAME_THREADS,
    SCALE_RECIPE,
    build_here,
    run_build,
    run_main,
    table,
    write_recipe,
)
from training.__main__ import main as train

TINY_SCORERS = ["--clip-model", "tiny-random", "--resnet50-weights", "tiny-random"]
NO_BACKBONE = ["--backbone-weights", "none"]  # a random ResNet18: no weights to download


@pytest.fixture(scope="module")
def long_recipe(tmp_path_factory) -> Path:
    """Enough shards (32) that a signal or a second build lands while the first is still making them."""
    return write_recipe(tmp_path_factory.mktemp("recipes"), SCALE_RECIPE.replace("COUNT", "30"))


def copy_of(scale_build: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(scale_build, tmp_path / "out", symlinks=True))


def files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[Path]:
    """What a failed or interrupted run must not leave: temporary files, staging directories, its lock."""
    return [p for p in out.rglob("*") if ".tmp-" in p.name or p.name.startswith("staging-") or p.name == LOCK_FILE]


def file_size_limit(limit: int):
    """A preexec_fn: writes past ``limit`` bytes fail with EFBIG (SIGXFSZ ignored), as on a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def run(command: list[str], preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **SAME_THREADS},
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=preexec_fn,
    )


def build_command(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "build.py"), str(recipe), "--output-dir", str(out), *extra]


# -- every shard is verified ---------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_damaged_shards_are_named_set_aside_and_made_again_alone(scale_recipe: Path, scale_build: Path, tmp_path: Path):
    out = copy_of(scale_build, tmp_path)
    shards = sorted((out / WORK_DIR / "shards").glob("*.parquet"))
    flipped, truncated, swapped, source, *untouched = shards
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of image bytes: same size, same footer
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-64])
    for suffix in (".parquet", ".json"):  # another valid shard with its own record in its place
        shutil.copyfile(source.with_suffix(suffix), swapped.with_suffix(suffix))
    stamps = {p: p.stat().st_mtime_ns for p in [source, *untouched]}

    result = build_here(str(scale_recipe), "--output-dir", str(out), env=SAME_THREADS)
    for bad in (flipped, truncated, swapped):
        assert bad.stem in result.stderr, "every damaged shard is reported by name"
        assert (out / WORK_DIR / "damaged" / bad.name).exists(), "set aside, not deleted"
    assert "12 images found done, 4 to make" in result.stderr  # truncated and swapped: found before generation
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "nothing else is made again"
    assert table(out) == table(scale_build)
    shard_inodes = {p.stat().st_ino for p in (out / WORK_DIR / "shards").glob("*.parquet")}
    for exported in (out / "data").glob("*.parquet"):
        assert exported.stat().st_nlink == 1 and exported.stat().st_ino not in shard_inodes, "copies, never links"


# -- the output directory is ours alone ------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["foreign", "checkout", "file"])
def test_directories_that_are_not_ours_are_refused_and_left_alone(scale_recipe: Path, tmp_path: Path, where: str):
    theirs = tmp_path / "theirs"
    (theirs / "data").mkdir(parents=True)
    (theirs / "data" / "their.parquet").write_bytes(b"theirs")
    (theirs / "README.md").write_text("their card")
    target = {"foreign": theirs, "checkout": ROOT, "file": theirs / "README.md"}[where]
    card = (ROOT / "README.md").read_bytes()
    for extra in ([], ["--overwrite"]):
        result = run_main(build, str(scale_recipe), "--output-dir", str(target), *extra)
        assert result.returncode == OUTPUT_REFUSED, result.stderr
        assert "Traceback" not in result.stderr and "--output-dir" in result.stderr
    assert files(theirs) == {"README.md": b"their card", "data/their.parquet": b"theirs"}
    assert (ROOT / "README.md").read_bytes() == card and not (ROOT / WORK_DIR).exists()


@pytest.mark.e2e
def test_a_link_in_our_output_is_never_written_through(scale_recipe: Path, scale_build: Path, tmp_path: Path):
    out = copy_of(scale_build, tmp_path)
    precious = tmp_path / "precious.md"
    precious.write_text("not a card")
    (out / "README.md").unlink()
    (out / "README.md").symlink_to(precious)
    result = run_main(build, str(scale_recipe), "--output-dir", str(out))
    assert result.returncode == OUTPUT_REFUSED and "README.md (a symbolic link" in result.stderr
    assert precious.read_text() == "not a card"


# -- faults end in one message, lose nothing, block nothing ------------------------------------------------------------
@pytest.mark.e2e
def test_sigterm_mid_build_cleans_up_and_the_rerun_resumes(long_recipe: Path, tmp_path: Path):
    out, log = tmp_path / "out", tmp_path / "log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            build_command(long_recipe, out), cwd=ROOT, env={**os.environ, **SAME_THREADS}, stderr=stderr
        )
        deadline = time.time() + 120
        while len(list((out / WORK_DIR / "shards").glob("*.parquet"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    stderr = log.read_text()
    assert process.returncode == 128 + signal.SIGTERM and "interrupted (SIGTERM)" in stderr
    assert "Traceback" not in stderr
    finished = len(list((out / WORK_DIR / "shards").glob("*.parquet")))
    assert 0 < finished < 32, "the signal must land mid-way"
    assert leftovers(out) == []
    result = build_here(str(long_recipe), "--output-dir", str(out), env=SAME_THREADS)
    assert f"{finished * 2} images found done" in result.stderr

    reference = build_here(str(long_recipe), "--output-dir", str(tmp_path / "reference"), env=SAME_THREADS)
    assert reference.returncode == 0 and table(out) == table(tmp_path / "reference")


@pytest.mark.e2e
def test_a_full_disk_during_export_keeps_the_previous_export_whole(
    scale_recipe: Path, scale_build: Path, tmp_path: Path
):
    out = copy_of(scale_build, tmp_path)
    before = files(out / "data") | {"README.md": (out / "README.md").read_bytes()}
    result = run(build_command(scale_recipe, out), preexec_fn=file_size_limit(8 << 10))  # shards are ~22 KB
    assert result.returncode == WRITE_FAILED, result.stderr
    assert "failed: a file grew larger than this system allows" in result.stderr and str(out) in result.stderr
    assert "run the same command again" in result.stderr and "Traceback" not in result.stderr
    assert files(out / "data") | {"README.md": (out / "README.md").read_bytes()} == before
    assert leftovers(out) == []
    build_here(str(scale_recipe), "--output-dir", str(out), env=SAME_THREADS)
    assert table(out) == table(scale_build)


@pytest.mark.e2e
def test_a_full_disk_before_any_shard_leaves_nothing_behind(scale_recipe: Path, scale_build: Path, tmp_path: Path):
    out = tmp_path / "new" / "out"
    result = run(build_command(scale_recipe, out), preexec_fn=file_size_limit(8 << 10))
    assert result.returncode == WRITE_FAILED and "Traceback" not in result.stderr
    assert not (tmp_path / "new").exists(), "a directory the failed run created is removed again"
    build_here(str(scale_recipe), "--output-dir", str(out), env=SAME_THREADS)
    assert table(out) == table(scale_build)


@pytest.mark.e2e
def test_no_space_left_on_a_small_disk_resumes_to_the_same_dataset(
    scale_recipe: Path, scale_build: Path, tmp_path: Path
):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the file-size limit tests cover a full disk")
    try:
        out = disk / "out"
        result = run(build_command(scale_recipe, out))
        assert result.returncode == WRITE_FAILED and "no space left on the device" in result.stderr, result.stderr
        assert leftovers(out) == [] and list((out / WORK_DIR / "shards").glob("*.parquet"))
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        build_here(str(scale_recipe), "--output-dir", str(out), env=SAME_THREADS)
        assert table(out) == table(scale_build)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# -- one build per directory -------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_a_second_build_into_the_same_directory_is_refused(long_recipe: Path, tmp_path: Path):
    out, log = tmp_path / "out", tmp_path / "log"
    with open(log, "w") as stderr:
        first = subprocess.Popen(build_command(long_recipe, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.time() + 120
        while not list((out / WORK_DIR / "shards").glob("*.parquet")) and time.time() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # mid-build, for as long as the second takes to start
        try:
            second = run_main(build, str(long_recipe), "--output-dir", str(out))
        finally:
            first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0, log.read_text()
    assert second.returncode == OUTPUT_REFUSED
    assert f"in use by another synthdata run (process {first.pid} on host {socket.gethostname()}" in second.stderr
    assert len(table(out)["id"]) == 64


@pytest.mark.e2e
def test_every_process_of_a_launch_stops_when_the_directory_is_busy(
    scale_recipe: Path, scale_build: Path, tmp_path: Path
):
    out = copy_of(scale_build, tmp_path)
    (out / WORK_DIR / LOCK_FILE).write_text(f"{os.getpid()}\n{socket.gethostname()}\n")  # this live process
    result = run_build(
        str(scale_recipe), "--output-dir", str(out), check=False, launcher=[*ACCELERATE, "--num_processes", "2"]
    )
    assert result.returncode != 0 and f"process {os.getpid()} on host" in result.stderr
    assert ": writing shard" not in result.stderr


# -- python -m eval and python -m training --------------------------------------------------------------------------
def test_eval_of_a_missing_dataset_is_one_message(tmp_path: Path):
    result = run_main(evaluate, "/nonexistent", "--output-dir", str(tmp_path / "o"), *TINY_SCORERS)
    assert result.returncode == 2 and "/nonexistent is neither a local directory nor a Hub dataset" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


@pytest.mark.e2e
def test_a_failed_eval_leaves_nothing_that_blocks_the_retry(scale_build: Path, tmp_path: Path):
    def score(out: Path, *extra: str) -> subprocess.CompletedProcess:
        return run_main(evaluate, str(scale_build), "--output-dir", str(out), *TINY_SCORERS, *extra)

    assert score(tmp_path / "first").returncode == 0  # the tiny scorers are in the cache from here on
    command = [sys.executable, "-m", "eval", str(scale_build), "--output-dir", str(tmp_path / "scored"), *TINY_SCORERS]
    failed = run(command, preexec_fn=file_size_limit(8 << 10))  # a process of its own: the limit is per process
    assert failed.returncode == WRITE_FAILED and "Traceback" not in failed.stderr, failed.stderr
    assert not (tmp_path / "scored").exists()
    assert score(tmp_path / "scored").returncode == 0  # no --overwrite needed
    assert {"README.md", "summary.json", "pictures", "data", WORK_DIR} <= {
        p.name for p in (tmp_path / "scored").iterdir()
    }
    again = score(tmp_path / "scored")
    assert again.returncode == OUTPUT_REFUSED and "pass --overwrite" in again.stderr
    assert score(tmp_path / "scored", "--overwrite").returncode == 0


@pytest.mark.e2e
def test_eval_and_training_refuse_a_directory_that_is_not_theirs(scale_build: Path, tmp_path: Path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "README.md").write_text("their card")
    commands = [
        (evaluate, str(scale_build), "--output-dir", str(theirs), "--overwrite", *TINY_SCORERS),
        (train, "--dataset", str(scale_build), "--output-dir", str(theirs), *NO_BACKBONE),
        (train, "--dataset", str(scale_build), "--output-dir", str(scale_build), *NO_BACKBONE),
    ]
    for command in commands:
        result = run_main(*command)
        assert result.returncode == OUTPUT_REFUSED and "Traceback" not in result.stderr, result.stderr
    assert files(theirs) == {"README.md": b"their card"}


@pytest.mark.e2e
def test_a_failed_training_leaves_no_directory_and_a_good_one_replaces_its_own(scale_build: Path, tmp_path: Path):
    out = tmp_path / "probe"
    args = ["--dataset", str(scale_build), "--output-dir", str(out), *NO_BACKBONE, "--epochs", "1"]
    failed = run_main(train, *args, "--train-split", "nosuch")
    assert failed.returncode == 2 and not out.exists()
    for _ in range(2):  # the second run replaces the first's outputs
        assert run([sys.executable, "-m", "training", *args]).returncode == 0
    assert {"metrics.json", "head.safetensors", "config.json", "README.md"} <= {p.name for p in out.iterdir()}
