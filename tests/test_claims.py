"""Claim files: a shard is claimed by one process, renewed, taken over when its lease runs out, released on failure.

Fast tier: real files in a temporary directory, a settable clock (leases of hours run out at once), real threads
racing for the same shard. The build's use of them (a stopped process's shard taken over) is in
tests/test_distributed.py.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from builders import cli
from builders.distributed_build import spread
from builders.store.claims import (
    DEFAULT_LEASE_SECONDS,
    LEASE_VARIABLE,
    Claims,
    LeaseSettingError,
    lease_seconds,
)
from builders.store.local import LocalClaimFiles, OutputDir, RankProgress, process_tag

KEY = "0123456789abcdef01234567"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def process(directory: Path, rank: int, clock: Clock, lease: float = 60.0) -> Claims:
    return Claims(LocalClaimFiles(directory, process_tag(rank)), rank, lease, clock)


def holder(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_claim_is_one_process_s_and_says_who_and_until_when(tmp_path: Path, clock: Clock):
    first, second = process(tmp_path, 0, clock), process(tmp_path, 1, clock)
    claim = first.take(KEY)
    assert claim is not None and claim.generation == 0 and not claim.taken_over
    assert holder(tmp_path / KEY) == {"host": socket.gethostname(), "rank": 0, "pid": os.getpid(), "expires": 1e6 + 60}
    assert second.take(KEY) is None and first.take(KEY) is None  # held, by the other or by itself
    assert first.holds(claim) and os.listdir(tmp_path) == [KEY]  # no temporary file left


def test_a_lease_is_renewed_every_quarter_and_then_not_taken_over(tmp_path: Path, clock: Clock):
    first, second = process(tmp_path, 0, clock), process(tmp_path, 1, clock)
    claim = first.take(KEY)
    clock.now += 10  # less than a quarter of the lease: nothing written
    assert first.renew(claim) and holder(tmp_path / KEY)["expires"] == 1e6 + 60
    clock.now += 20
    assert first.renew(claim) and holder(tmp_path / KEY)["expires"] == 1e6 + 90
    clock.now += 50  # past the first lease, within the renewed one
    assert second.take(KEY) is None and first.holds(claim)


def test_an_expired_lease_is_taken_over_and_its_holder_learns_it(tmp_path: Path, clock: Clock):
    first, second, third = (process(tmp_path, rank, clock) for rank in range(3))
    stalled = first.take(KEY)
    clock.now += 60  # the lease has run out: the holder is slow or lost
    taken = second.take(KEY)
    assert taken is not None and taken.generation == 1 and taken.taken_over
    assert holder(tmp_path / f"{KEY}.1")["rank"] == 1
    assert third.take(KEY) is None  # the takeover holds now
    assert not first.holds(stalled) and not first.renew(stalled)  # the stalled process drops the shard
    assert holder(tmp_path / KEY)["expires"] == 1e6 + 60  # and never rewrites a claim it lost
    clock.now += 60
    again = third.take(KEY)
    assert again is not None and again.generation == 2 and not second.holds(taken)


@pytest.mark.parametrize("expired", [False, True])
def test_of_processes_racing_for_a_shard_exactly_one_wins(tmp_path: Path, clock: Clock, expired: bool):
    if expired:  # all of them race to take over the same lapsed claim
        process(tmp_path, 99, clock).take(KEY)
        clock.now += 3600
    racers = [process(tmp_path, rank, clock) for rank in range(16)]
    start = threading.Barrier(len(racers))
    won: list[int] = []

    def race(claims: Claims) -> None:
        start.wait()
        if claims.take(KEY) is not None:
            won.append(claims.rank)

    threads = [threading.Thread(target=race, args=(claims,)) for claims in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    generation = int(expired)
    assert holder(tmp_path / Claims.name(KEY, generation))["rank"] == won[0]
    assert not (tmp_path / Claims.name(KEY, generation + 1)).exists()


def test_a_released_claim_is_taken_at_once(tmp_path: Path, clock: Clock):
    failing, other = process(tmp_path, 0, clock), process(tmp_path, 1, clock)
    claim = failing.take(KEY)
    failing.release(claim)
    assert holder(tmp_path / KEY)["expires"] == 0
    taken = other.take(KEY)
    assert taken is not None and taken.taken_over
    failing.release(claim)  # a claim already taken over is left alone
    assert holder(tmp_path / f"{KEY}.1")["expires"] == 1e6 + 60


def test_an_unreadable_claim_counts_as_lapsed(tmp_path: Path, clock: Clock):
    (tmp_path / KEY).write_text("{not json", encoding="utf-8")
    claim = process(tmp_path, 1, clock).take(KEY)
    assert claim is not None and claim.generation == 1


def test_processes_start_their_scan_apart():
    shards = list(range(10))
    starts = [next(spread(shards, SimpleNamespace(process_index=rank, num_processes=3))) for rank in range(3)]
    assert starts == [0, 3, 6]
    assert list(spread(shards, SimpleNamespace(process_index=2, num_processes=3))) == [6, 7, 8, 9, 0, 1, 2, 3, 4, 5]


def test_progress_is_one_small_file_per_process(tmp_path: Path):
    store = OutputDir(tmp_path)
    store.progress.mkdir(parents=True)
    store.report_progress(1, RankProgress(images=12, shards=3, taken_over=1))
    assert sorted(os.listdir(store.progress)) == ["rank-1.json"]  # its temporary name (host-rank-pid) is gone
    assert store.progress_of(3) == [RankProgress(), RankProgress(12, 3, 1), RankProgress()]


# -- SYNTHDATA_LEASE_SECONDS ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [("", DEFAULT_LEASE_SECONDS), ("2", 2.0), (" 90.5 ", 90.5), ("86400", 86400)])
def test_the_lease_comes_from_the_environment(text: str, seconds: float):
    assert lease_seconds({LEASE_VARIABLE: text}) == seconds
    assert lease_seconds({}) == DEFAULT_LEASE_SECONDS


@pytest.mark.parametrize("text", ["0", "0.5", "86401", "-3", "ten", "nan", "inf"])
def test_a_bad_lease_is_refused(text: str):
    with pytest.raises(LeaseSettingError, match=f"{LEASE_VARIABLE}=.*expected a number of seconds from 1 to 86400"):
        lease_seconds({LEASE_VARIABLE: text})


def test_build_py_refuses_a_bad_lease_with_exit_2(monkeypatch, capsys, tmp_path: Path):
    monkeypatch.setenv(LEASE_VARIABLE, "ten minutes")
    assert cli.main(["recipes/smoke.yaml", "--output-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"{LEASE_VARIABLE}='ten minutes': expected a number of seconds from 1 to 86400" in error
    assert "Traceback" not in error and not (tmp_path / "out").exists()
