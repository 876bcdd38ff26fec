"""The generator registry: every generator plug-in, by the diffusers pipeline class it runs.

To add a diffusers family, write a module beside these with a ``Generator`` subclass (``base.py``) and add one
line to ``GENERATORS``. ``generator_for`` picks the plug-in from the model's ``model_index.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from builders.generators.base import Generator
from builders.generators.stable_diffusion import StableDiffusion
from synthcore.model_refs import TINY_RANDOM, is_local_path

GENERATORS: dict[str, Generator] = {
    name: generator for generator in (StableDiffusion(),) for name in generator.pipeline_classes
}


class UnknownFamily(ValueError):
    """The model's pipeline class is none of the registered generators'."""


def pipeline_class(model_id: str) -> str:
    """The diffusers pipeline class a model declares in its ``model_index.json`` (read locally: a local directory;
    ``tiny-random`` and Hub ids are Stable Diffusion until their index is fetched)."""
    index = Path(model_id).expanduser() / "model_index.json"
    if model_id != TINY_RANDOM and is_local_path(model_id) and index.is_file():
        return json.loads(index.read_text(encoding="utf-8")).get("_class_name", "?")
    return StableDiffusion.pipeline_classes[0]


def generator_for(model_id: str) -> Generator:
    name = pipeline_class(model_id)
    if name not in GENERATORS:
        raise UnknownFamily(
            f"model {model_id!r} is a {name}, which synthdata cannot run; known pipelines: {', '.join(GENERATORS)}"
        )
    return GENERATORS[name]
