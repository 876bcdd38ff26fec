"""Shared fixtures. Everything runs offline on CPU with tiny random models built once per test session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.helpers import run_build

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SYNTHDATA_CACHE", tempfile.mkdtemp(prefix="synthdata-test-cache-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Byte comparisons between builds need one thread setting: with 2 CPU threads, float rounding can differ in the last
# bit between two processes (seen: one pixel level in 3072). Tests pin it, as the README advises users to.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    """The shipped smoke recipe, built once for the session with ``python build.py``."""
    out = tmp_path_factory.mktemp("smoke") / "smoke"
    run_build("recipes/smoke.yaml", "--output-dir", str(out))
    return out
