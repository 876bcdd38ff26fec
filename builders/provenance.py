"""Provenance: library versions and the models (with the Hub commit each resolved to), recorded with every dataset.

Everything here is read from the recipe, the installed packages and the local Hub cache, never from models a
process happened to load, so ``build_info.json`` is the same however the work was divided or resumed.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from builders.models import TINY_RANDOM, is_local_path
from builders.recipe import Recipe


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "diffusers", "transformers", "datasets", "accelerate", "huggingface_hub"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def hub_commit(ref: str, revision: str | None, filename: str) -> str | None:
    """The commit a Hub model's ``filename`` resolved to in the local cache; None for local or uncached models."""
    if ref == TINY_RANDOM or is_local_path(ref):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref, filename, revision=revision)
    return Path(cached).parent.name if isinstance(cached, str) else None


def provenance(recipe: Recipe) -> dict:
    clip, resnet = recipe.scoring.clip, recipe.scoring.resnet50
    models = {
        "generator": {"id": recipe.model.id, "revision": recipe.model.revision,
                      "commit": hub_commit(recipe.model.id, recipe.model.revision, "model_index.json")},
    }
    if clip.enabled:
        models["clip"] = {"id": clip.model, "commit": hub_commit(clip.model, None, "config.json")}
    if resnet.enabled:
        models["resnet50"] = {"weights": resnet.weights}
    return {"versions": library_versions(), "models": models}
