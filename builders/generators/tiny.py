"""The tiny random pipelines of the generator families, for tests and benchmarks: each plug-in writes its own
(``Generator.write_tiny``, beside the family's code); here they are built once, seeded, and cached in
``$SYNTHDATA_CACHE`` beside the shared tiny models of ``synthcore.tiny``. A recipe names one by its directory."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from builders.generators import FAMILIES
from builders.generators.base import Generator
from synthcore.tiny import built_once, tiny_families_root, with_seed

_WRITERS: dict[str, Generator] = {name: generator for generator in FAMILIES for name in generator.tiny_names}
TINY_FAMILIES = tuple(_WRITERS)  # e.g. "sdxl", "flux-dev", "flux-schnell"


def tiny_family_dir(name: str) -> Path:
    """The local directory of the tiny random pipeline ``name`` (one of ``TINY_FAMILIES``), built on first use."""
    if name not in _WRITERS:
        raise ValueError(f"no tiny random pipeline {name!r}; known: {', '.join(TINY_FAMILIES)}")
    return built_once(tiny_families_root() / name, with_seed(partial(_WRITERS[name].write_tiny, name=name)))
