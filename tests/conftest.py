"""Shared fixtures. Everything runs offline on CPU with tiny random models built once per test session."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import SAME_THREADS, SCALE_RECIPE, build_here, run_build, write_recipe

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SYNTHDATA_CACHE", tempfile.mkdtemp(prefix="synthdata-test-cache-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Byte comparisons between builds need one thread setting: with 2 CPU threads, float rounding can differ in the last
# bit between two processes (seen: one pixel level in 3072). Tests pin it, as the README advises users to.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def shipped_recipe_photos() -> None:
    """The photos recipes/fox_dog_guided.yaml starts from (``recipes/photos/``, ignored by git: a user supplies
    their own): where none are, two small random stand-ins per class, so every shipped recipe loads in the tests."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("fox", "dog"):
        folder = Path(__file__).resolve().parents[1] / "recipes" / "photos" / name
        if not folder.is_dir() or not any(folder.iterdir()):
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"stand-in-{i}.png")


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The shipped smoke recipe, built once for the session with ``python build.py``: where, and what it printed."""
    out = tmp_path_factory.mktemp("smoke") / "smoke"
    return out, run_build("recipes/smoke.yaml", "--output-dir", str(out))


@pytest.fixture(scope="session")
def smoke_dir(smoke_build) -> Path:
    """The smoke build's output directory. Read-only: a test that changes files works on a copy."""
    return smoke_build[0]


@pytest.fixture(scope="session")
def smoke_log(smoke_build) -> str:
    """What the smoke build wrote to stderr (its log lines and progress bars)."""
    return smoke_build[1].stderr


@pytest.fixture(scope="session")
def scale_recipe(tmp_path_factory) -> Path:
    """``SCALE_RECIPE`` with 6 training images a class: 16 images in 8 shards, no scorers."""
    return write_recipe(tmp_path_factory.mktemp("scale"), SCALE_RECIPE.replace("COUNT", "6"))


@pytest.fixture(scope="session")
def scale_build(scale_recipe: Path, tmp_path_factory) -> Path:
    """``scale_recipe`` built once for the session by one process (this one): the dataset every process count,
    resume and store must give. Tests read it; one that changes files works on a copy."""
    out = tmp_path_factory.mktemp("scale-build") / "out"
    build_here(str(scale_recipe), "--output-dir", str(out), env=SAME_THREADS)
    return out
