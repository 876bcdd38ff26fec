"""Recipe values given on the command line: ``build.py RECIPE generation.num_inference_steps=4 splits.train=8``.

Each override is a dotted key path and a YAML value (``model.id=stabilityai/sdxl-turbo``, ``splits.train=8``,
``generation.guidance_scale=[1.5, 4]``). They are set into the recipe file's data before it is validated, so the
result is checked by the same rules, with the same key paths, as a file that said so; it is then a recipe like any
other (recorded in ``recipe.yaml`` and the card). A key path is checked against the recipe's keys first, so a typo is
named as the override that made it. Under a mapping of free names (``classes.<name>``, ``splits.<name>``) any name
is taken, and a list is replaced whole.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from builders.recipe import Recipe, RecipeError, load_recipe, parse_recipe
from synthcore.yamlfile import load_yaml, read_text, short_repr


@dataclass(frozen=True)
class Override:
    """One ``key.path=value`` of the command line, its value read as YAML."""

    text: str
    path: tuple[str, ...]
    value: Any


def looks_like_override(arg: str) -> bool:
    """Whether a command-line word is a ``key=value`` override (a recipe path or Hub id holds no ``=``)."""
    return "=" in arg and not arg.startswith("-")


def parse_override(text: str) -> Override:
    """``a.b=value`` as an override; a ``ValueError`` naming it when it is not one."""
    key, _, raw = text.partition("=")
    path = tuple(key.split("."))
    if "=" not in text or not all(path):
        raise ValueError(f"override {short_repr(text)}: expected KEY.PATH=VALUE, e.g. generation.num_inference_steps=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""  # ``key=`` is empty text (``key=null`` is null)
    except yaml.YAMLError as err:
        raise ValueError(f"override {short_repr(text)}: the value is not valid YAML ({err.problem})") from None
    return Override(text, path, value)


def load_recipe_with(path: Path, overrides: Sequence[Override]) -> Recipe:
    """The recipe file with the overrides set into its data, then validated as one file would be."""
    if not overrides:
        return load_recipe(path)
    problems = [
        f"command-line override {short_repr(o.text)}: {problem}" for o in overrides if (problem := unknown_key(o.path))
    ]
    if problems:
        raise RecipeError(str(path), problems)
    text = read_text(path, RecipeError)
    data = load_yaml(text, str(path), RecipeError)
    if not isinstance(data, dict):
        return parse_recipe(text, str(path), path.parent)  # its own error: not a mapping
    source = f"{path} with {' '.join(o.text for o in overrides)}"
    text = yaml.safe_dump(apply_overrides(data, overrides), allow_unicode=True, sort_keys=False)
    return parse_recipe(text, source, path.parent)


def apply_overrides(data: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """A copy of the recipe's data with each override set in turn. A new ``model.id`` drops the ``model.pipeline``
    recorded for the old model (a built dataset's recipe.yaml has one), unless an override sets it too."""
    data = copy.deepcopy(data)
    for override in overrides:
        *parents, last = override.path
        node = data
        for depth, key in enumerate(parents):
            child = node.setdefault(key, {})
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                where = ".".join(override.path[: depth + 1])
                raise RecipeError(
                    "the command line",
                    [f"override {short_repr(override.text)}: {where} is a {type(child).__name__}, not a mapping"],
                )
            node = child
        node[last] = override.value
    paths = {o.path for o in overrides}
    if ("model", "id") in paths and ("model", "pipeline") not in paths and isinstance(data.get("model"), dict):
        data["model"].pop("pipeline", None)
    return data


def unknown_key(path: tuple[str, ...]) -> str | None:
    """Why the key path names no recipe key (None when it does): the first part that is not one, and the keys
    that would be there."""
    model: type[BaseModel] | None = Recipe
    free = False  # the next part is a name of the user's (a class, a split)
    for depth, key in enumerate(path):
        if free:
            free = False
            continue
        if model is None:
            return None  # below a value the recipe does not describe key by key: the validation judges it
        if key not in model.model_fields:
            where = ".".join(path[:depth]) or "the top level"
            return f"{'.'.join(path[: depth + 1])}: unknown key ({where} has {', '.join(model.model_fields)})"
        model, free = _inside(model.model_fields[key].annotation)
    return None


def _inside(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """What a field holds: (its settings model or None, whether a free name comes first, as in a dict)."""
    for arg in _unwrapped(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, False
        if typing.get_origin(arg) is dict:
            model, _ = _inside(typing.get_args(arg)[1])
            return model, True
    return None, False


def _unwrapped(annotation: Any) -> list[Any]:
    """The types an annotation allows: ``Optional``/unions split, ``Annotated`` stripped."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrapped(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrapped(arg)]
    return [annotation]
