"""Per-process thread counts: the cores shared among the local processes, unless the user set them."""

from __future__ import annotations

import os

import pytest

from synthcore.launch import THREAD_VARIABLES, threads_per_process


@pytest.fixture()
def no_thread_settings(monkeypatch):
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)


@pytest.mark.parametrize("local, threads", [(None, None), ("1", None), ("2", 8), ("3", 5), ("32", 1)])
def test_cores_are_divided_among_local_processes(no_thread_settings, monkeypatch, local, threads):
    if local is not None:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    else:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads_per_process() == threads


def test_the_users_setting_wins(no_thread_settings, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads_per_process() is None
