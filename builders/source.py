"""What ``build.py`` may be given in place of a recipe file: a built dataset's directory, or a Hub dataset id.

Every dataset carries the recipe that made it (``recipe.yaml`` beside the data, every default explicit), so a
dataset is as good as its recipe for rebuilding it. A recipe taken from a dataset loses its ``hub`` section: a
rebuild must never push to the original's repo unless it is asked to (``--push-to-hub``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builders.overrides import Override, load_recipe_with
from builders.recipe import Recipe

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class SourceError(ValueError):
    """The argument is neither a recipe file, nor a dataset directory with its recipe, nor a reachable Hub dataset."""


@dataclass(frozen=True)
class RecipeSource:
    recipe: Recipe
    dataset_dir: Path | None = None  # set when the recipe was read from a built dataset's directory


def recipe_source(ref: str, overrides: Sequence[Override] = ()) -> RecipeSource:
    """The recipe named by ``ref``: a recipe file, a dataset directory (its recipe.yaml), or a Hub dataset id; with
    the command line's ``overrides`` set into it before it is validated."""
    path = Path(ref).expanduser()
    if path.is_dir():
        stored = path / "recipe.yaml"
        if not stored.is_file():
            raise SourceError(
                f"{path}: a directory given in place of a recipe must be a dataset built by build.py; it has no "
                "recipe.yaml"
            )
        return RecipeSource(load_recipe_with(stored, overrides).without_hub(), path)
    if path.exists() or path.suffix in (".yaml", ".yml") or not _HUB_ID.match(ref):
        return RecipeSource(load_recipe_with(path, overrides))
    from builders.hub import download_recipe

    try:
        return RecipeSource(load_recipe_with(download_recipe(ref), overrides).without_hub())
    except FileNotFoundError as err:
        raise SourceError(f"{ref}: no such recipe file or dataset directory, and {err}") from None
