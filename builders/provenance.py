"""Provenance: library versions and the models (with the Hub commit each resolved to), recorded with every dataset.

Everything here is read from the recipe, the installed packages and the local Hub cache, never from models a
process happened to load, so ``build_info.json`` is the same however the work was divided or resumed.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version

from builders.recipe import Recipe, recipe_to_yaml
from eval.scorers import scorer_provenance
from synthcore.model_refs import hub_commit


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "diffusers", "transformers", "datasets", "accelerate", "huggingface_hub"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def dataset_provenance(recipe: Recipe, fingerprint: dict) -> dict:
    """How the dataset was made: the recipe in full, the content fingerprint, library versions and model revisions."""
    return {
        "recipe": json.loads(recipe.model_dump_json()),
        "recipe_yaml": recipe_to_yaml(recipe),
        "fingerprint": fingerprint,
        **provenance(recipe),
    }


def provenance(recipe: Recipe) -> dict:
    generator = {
        "id": recipe.model.id,
        "revision": recipe.model.revision,
        "commit": hub_commit(recipe.model.id, recipe.model.revision, "model_index.json"),
    }
    return {"versions": library_versions(), "models": {"generator": generator, **scorer_provenance(recipe.scoring)}}
