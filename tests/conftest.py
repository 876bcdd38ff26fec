"""Shared fixtures. Everything runs offline on CPU with tiny random models built once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SYNTHDATA_CACHE", tempfile.mkdtemp(prefix="synthdata-test-cache-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Byte comparisons between builds need one thread setting: with 2 CPU threads, float rounding can differ in the last
# bit between two processes (seen: one pixel level in 3072). Tests pin it, as the README advises users to.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_build(
    *args: str, env: dict | None = None, check: bool = True, launcher: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``build.py`` the way a user does, in a fresh process."""
    command = [*(launcher or [sys.executable]), str(ROOT / "build.py"), *args]
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    """The shipped smoke recipe, built once for the session with ``python build.py``."""
    out = tmp_path_factory.mktemp("smoke") / "smoke"
    run_build("recipes/smoke.yaml", "--output-dir", str(out))
    return out


def write_recipe(directory: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
