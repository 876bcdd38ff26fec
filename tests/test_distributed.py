"""Scale: the same dataset from 1, 2 or 3 processes; resume after kill -9; no mixing of recipes.

Multi-process runs go through the real launcher, ``accelerate launch --multi_gpu --num_processes N``, which on
this GPU-less machine works only because build.py creates accelerate's state in CPU mode (gloo).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders.cli import main
from tests.helpers import (
    ACCELERATE,
    ROOT,
    SAME_THREADS,
    build_here,
    run_build,
    run_main,
    run_report,
    table,
    write_recipe,
)

pytestmark = pytest.mark.e2e  # builds, model loads or subprocesses: the end-to-end tier


@pytest.mark.parametrize("processes", [2, 3])
def test_any_number_of_processes_gives_the_same_dataset(
    processes: int, scale_recipe: Path, scale_build: Path, tmp_path: Path
):
    out = tmp_path / "out"
    run_build(
        str(scale_recipe),
        "--output-dir",
        str(out),
        env=SAME_THREADS,
        launcher=[*ACCELERATE, "--num_processes", str(processes)],
    )
    report = run_report(out)
    # Shards go to whichever process claims them first: on a busy machine one process can make them all (seen:
    # [0, 8, 0], the others still loading the model), so only the total is fixed.
    assert report["processes"] == processes and sum(report["shards_per_process"]) == 8
    assert len(report["shards_per_process"]) == len(report["taken_over_per_process"]) == processes
    loading = report["loading_seconds_per_process"]  # 0 for a process that found every shard taken before it loaded
    assert len(loading) == processes and min(loading) >= 0 and max(loading) > 0
    expected = table(scale_build)
    assert len(expected["id"]) == 16
    assert table(out) == expected


def test_cpu_launch_without_cpu_mode_is_refused(tmp_path: Path):
    """Under --multi_gpu on a GPU-less machine, a state made without cpu=True believes it is rank 0 of 1."""
    script = write_recipe(
        tmp_path,
        "from accelerate import PartialState\nfrom synthcore.launch import check_world\n"
        "check_world(PartialState())\nprint('not refused')\n",
        name="probe.py",
    )
    result = subprocess.run(
        [*ACCELERATE, "--num_processes", "2", str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert result.returncode != 0 and "not refused" not in result.stdout
    assert "every process would do the whole job" in result.stderr


def test_killed_build_resumes_to_the_same_dataset(scale_recipe: Path, scale_build: Path, tmp_path: Path):
    out = tmp_path / "out"
    shards = out / ".synthdata" / "shards"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "build.py"), str(scale_recipe), "--output-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, **SAME_THREADS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not (list(shards.glob("*.parquet")) and unfinished_claims(out)) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(shards.glob("*.parquet")))
    assert 0 < finished < 8, "the kill must land mid-way"
    assert unfinished_claims(out), "the killed run leaves the claim of the shard it was making"
    (shards / "0123456789abcdef01234567.parquet.tmp-999").write_bytes(b"half a shard")  # a writer killed mid-file

    build_here(str(scale_recipe), "--output-dir", str(out), env=SAME_THREADS)
    assert (run_report(out)["images_found_done"], run_report(out)["images_generated"]) == (
        finished * 2,
        16 - finished * 2,
    )
    assert not list(shards.glob("*.tmp*"))
    assert run_report(out)["taken_over_per_process"] == [0]  # stale claims are dropped at the start, not waited for
    assert table(out) == table(scale_build)
    models = lambda path: json.loads((path / "build_info.json").read_text())["models"]  # noqa: E731
    assert models(out) == models(scale_build)


def unfinished_claims(out: Path) -> dict[str, dict]:
    """The claim files of shards not finished yet, by shard key: what each says (host, rank, pid, expires)."""
    claims, shards = out / ".synthdata" / "claims", out / ".synthdata" / "shards"
    found = {}
    for path in sorted(claims.glob("[0-9a-f]*")) if claims.is_dir() else []:
        key = path.name.split(".")[0]
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):  # replaced while read
            continue
        if not (shards / f"{key}.parquet").exists():
            found[key] = holder
    return found


def test_a_stopped_process_s_shard_is_taken_over(scale_recipe: Path, scale_build: Path, tmp_path: Path):
    """A process is stopped (SIGSTOP) in the middle of a shard; under a 2 s lease, the other one takes the shard
    over and finishes the build; the stopped one, woken, drops the shard. Which process is stopped is whichever first
    holds an unfinished shard: on a fast machine rank 0 can make every shard before rank 1 has loaded its model (seen
    on CI). When rank 1 is the one stopped, rank 0 also exports without waiting for it."""
    out, log = tmp_path / "out", tmp_path / "launch.log"
    with log.open("w") as output:
        launch = subprocess.Popen(
            [*ACCELERATE, "--num_processes", "2", str(ROOT / "build.py"), str(scale_recipe), "--output-dir", str(out)],
            cwd=ROOT,
            env={**os.environ, **SAME_THREADS, "SYNTHDATA_LEASE_SECONDS": "2"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid = None
    try:
        stopped, rank, pid = stop_a_rank_mid_shard(out, launch, deadline=time.time() + 300)
        wait_for(lambda: len(list((out / ".synthdata" / "shards").glob("*.parquet"))) == 8, launch)
        if rank == 1:  # the main process exports and writes its report while rank 1 is still stopped
            wait_for(lambda: (out / ".synthdata" / "run.json").exists(), launch)
        assert (out / ".synthdata" / "claims" / f"{stopped}.1").exists()  # its claim, taken over once
        os.kill(pid, signal.SIGCONT)  # the launcher starts each rank in a session of its own: signalled by pid
        assert launch.wait(timeout=300) == 0, log.read_text()
    finally:
        if launch.poll() is None:
            if pid:
                os.kill(pid, signal.SIGKILL)
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
    report = run_report(out)
    assert report["taken_over_per_process"][1 - rank] >= 1 and sum(report["shards_per_process"]) == 8
    assert "was taken over by another process" in log.read_text()
    assert table(out) == table(scale_build)


def stop_a_rank_mid_shard(out: Path, launch: subprocess.Popen, deadline: float) -> tuple[str, int, int]:
    """Stop the first process seen holding a claim on an unfinished shard (its claim file names its rank and pid);
    return that shard's key, the rank and the pid."""
    while time.time() < deadline and launch.poll() is None:
        for key, holder in unfinished_claims(out).items():
            os.kill(holder["pid"], signal.SIGSTOP)
            if key in unfinished_claims(out):  # not committed just before the stop
                return key, holder["rank"], holder["pid"]
            os.kill(holder["pid"], signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError(f"no process was seen holding an unfinished shard (launcher exit: {launch.poll()})")


def wait_for(condition, launch: subprocess.Popen, seconds: float = 300) -> None:
    """Wait until ``condition()`` holds; fail at once if the launcher exits first, or after ``seconds``."""
    deadline = time.time() + seconds
    while not condition():
        assert launch.poll() is None and time.time() < deadline, f"gave up waiting (launcher exit: {launch.poll()})"
        time.sleep(0.2)


def test_a_different_recipe_into_the_same_directory_is_refused(scale_recipe: Path, scale_build: Path, tmp_path: Path):
    before = {p.name: p.stat().st_mtime_ns for p in (scale_build / "data").iterdir()}
    changed = write_recipe(
        tmp_path, scale_recipe.read_text().replace("num_inference_steps: 2", "num_inference_steps: 3")
    )
    result = run_main(main, str(changed), "--output-dir", str(scale_build))
    assert result.returncode == 2
    assert "generation.num_inference_steps: 2 -> 3" in result.stderr and "--overwrite" in result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (scale_build / "data").iterdir()} == before


def test_overwrite_starts_again(scale_recipe: Path, scale_build: Path, tmp_path: Path):
    out = Path(shutil.copytree(scale_build, tmp_path / "out", symlinks=True))
    changed = write_recipe(
        tmp_path, scale_recipe.read_text().replace("num_inference_steps: 2", "num_inference_steps: 1")
    )
    build_here(str(changed), "--output-dir", str(out), "--overwrite")
    assert (run_report(out)["images_found_done"], run_report(out)["images_generated"]) == (0, 16)
    assert len(list((out / ".synthdata" / "shards").glob("*.parquet"))) == 8


def test_raising_a_count_and_adding_a_split_reuse_finished_shards(
    scale_recipe: Path, scale_build: Path, tmp_path: Path
):
    out = Path(shutil.copytree(scale_build, tmp_path / "out", symlinks=True))
    bigger = write_recipe(
        tmp_path, scale_recipe.read_text().replace("splits: {train: 6, test: 2}", "splits: {train: 8, test: 2, val: 2}")
    )
    build_here(str(bigger), "--output-dir", str(out), env=SAME_THREADS)
    assert (run_report(out)["images_found_done"], run_report(out)["images_generated"]) == (16, 8)
    rows = table(out)
    old = table(scale_build)
    by_id = dict(zip(rows["id"], rows["image"]))
    assert all(by_id[i] == image for i, image in zip(old["id"], old["image"]))
    assert len(rows["id"]) == 24 and sorted(p.name.split("-")[0] for p in (out / "data").iterdir()).count("val") == 2


def test_dry_run_loads_no_model(scale_recipe: Path, tmp_path: Path):
    result = build_here(
        str(scale_recipe),
        "--dry-run",
        "--output-dir",
        str(tmp_path / "none"),
        env={"SYNTHDATA_CACHE": str(tmp_path / "empty-cache")},
    )
    assert "16 images, 8 shards" in result.stdout and "train       fox" in result.stdout
    assert "estimated GPU time" in result.stdout
    assert not (tmp_path / "empty-cache").exists() and not (tmp_path / "none").exists()


def test_the_speedup_benchmark_prints_figures_of_every_process_count():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--what", "speedup", "--processes", "1", "2"]
        + ["--size", "32", "--steps", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|") for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row[0]) for row in rows] == [1, 2]
    shares = [json.loads(row[-1]) for row in rows]
    assert shares[0] == [12] and sum(shares[1]) == 12  # 12 one-batch shards (who makes which is first come)
    assert all(float(row[2]) > 0 for row in rows), "the slowest process's model loading"
    assert float(result.stdout.strip().splitlines()[-1].split()[-1]) > 0
