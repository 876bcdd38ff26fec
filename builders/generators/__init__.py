"""The generator registry: every generator plug-in, by the diffusers pipeline class it runs.

To add a diffusers family, write a module beside these with a ``Generator`` subclass (``base.py``; most families
are a ``SignatureGenerator`` of ``generic.py`` with a few class attributes; a modular pipeline's a
``ModularGenerator`` of ``modular.py``) and add it to ``FAMILIES``. A text-to-image pipeline class of no
registered family runs with ``generic.Generic``. ``resolve_family`` picks the plug-in from the model's
``model_index.json`` (a modular pipeline's ``modular_model_index.json``) and gives the recipe the family's
defaults, before any weights load.
"""

from __future__ import annotations

from builders.generators.base import Generator
from builders.generators.flux import Flux
from builders.generators.flux2 import Flux2Klein
from builders.generators.flux3 import Flux3
from builders.generators.generic import TEXT_TO_IMAGE, generic_for
from builders.generators.krea2 import Krea2
from builders.generators.modular import generic_modular_for
from builders.generators.pixart import PixArtSigma
from builders.generators.qwen_image21 import QwenImage21
from builders.generators.sana import Sana
from builders.generators.sd3 import StableDiffusion3
from builders.generators.sdxl import StableDiffusionXL
from builders.generators.sources import ModelFiles, ModelIndexError
from builders.generators.stable_diffusion import StableDiffusion
from builders.generators.z_image import ZImage
from builders.recipe import Recipe, RecipeError

FAMILIES: tuple[Generator, ...] = (
    StableDiffusion(),
    StableDiffusionXL(),
    StableDiffusion3(),
    Flux(),
    PixArtSigma(),
    Sana(),
    ZImage(),
    Flux2Klein(),
    Krea2(),
    Flux3(),
    QwenImage21(),
)
GENERATORS: dict[str, Generator] = {name: generator for generator in FAMILIES for name in generator.pipeline_classes}

__all__ = [
    "FAMILIES",
    "GENERATORS",
    "ModelIndexError",
    "UnknownFamily",
    "card_tags",
    "family_of",
    "generator_for",
    "generator_of_class",
    "resolve_family",
]


class UnknownFamily(ModelIndexError):
    """The model's pipeline class is none of the registered generators'."""


def generator_for(files: ModelFiles) -> Generator:
    """The plug-in that runs the model, from the pipeline class its ``model_index.json`` names: its family's, else
    the generic one when the class is a text-to-image pipeline (``generic.is_text_to_image``)."""
    name = files.pipeline_class()
    found = generator_of_class(name)
    if found is None:
        known = ", ".join(f"{cls} ({g.label})" for cls, g in GENERATORS.items())
        raise UnknownFamily(
            f"model.id: {files.model_id!r} is a {name}, which synthdata cannot run: it is no text-to-image pipeline "
            f"of diffusers (one whose call takes {', '.join(TEXT_TO_IMAGE)}); known families: {known}"
        )
    return found


def generator_of_class(pipeline_class: str) -> Generator | None:
    """The registered family of a pipeline class, else its generic plug-in; None when it is not text-to-image."""
    return GENERATORS.get(pipeline_class) or generic_for(pipeline_class) or generic_modular_for(pipeline_class)


def resolve_family(recipe: Recipe, source: str = "<recipe>") -> Recipe:
    """The recipe checked against its model's family, with the family's defaults in the keys it left out and the
    pipeline class recorded (``model.pipeline``), so ``recipe.yaml`` says what was run. Only the model's small JSON
    files are read. Every problem is raised together as a ``RecipeError`` of ``source``."""
    files = ModelFiles(recipe.model.id, recipe.model.revision)
    try:
        generator = generator_for(files)
        problems = generator.problems(recipe, files)
    except ModelIndexError as err:
        raise RecipeError(source, [str(err)]) from None
    recorded = recipe.model.pipeline
    if recorded is not None and recorded != files.pipeline_class():
        problems.insert(
            0, f"model.pipeline: the model's model_index.json names {files.pipeline_class()}, not {recorded}"
        )
    if problems:
        raise RecipeError(source, problems)
    return generator.resolve(recipe, files)


def family_of(recipe: Recipe) -> Generator:
    """The plug-in of a recipe (resolved or not: ``model.pipeline`` is read when recorded)."""
    recorded = recipe.model.pipeline
    if recorded is not None and (found := generator_of_class(recorded)) is not None:
        return found
    return generator_for(ModelFiles(recipe.model.id, recipe.model.revision))


def describe(recipe: Recipe) -> dict:
    """What build_info.json and the card say about the generator (``Generator.describe``)."""
    return family_of(recipe).describe(recipe, ModelFiles(recipe.model.id, recipe.model.revision))


def card_tags(recipe: Recipe) -> tuple[str, ...]:
    """The Hub tags naming the recipe's family (``Generator.card_tags``); none when its family cannot be told (a
    recipe that was never resolved, of a model whose ``model_index.json`` cannot be read)."""
    try:
        return family_of(recipe).card_tags
    except ModelIndexError:
        return ()
