"""Provenance: library versions and model revisions, recorded with every dataset."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "diffusers", "transformers", "datasets", "accelerate", "huggingface_hub"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def model_revision(model) -> str | None:
    """The Hub commit a model was loaded from, when it came from the Hub (``_commit_hash`` in its config)."""
    config = getattr(model, "config", None)
    return getattr(config, "_commit_hash", None) if config is not None else None


def provenance(pipe=None) -> dict:
    info = {"versions": library_versions()}
    if pipe is not None:
        info["generator"] = {"name_or_path": pipe.config._name_or_path, "text_encoder_revision": model_revision(pipe.text_encoder)}
    return info
