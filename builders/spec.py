"""A build, resolved once: ``prepare`` turns the command line into a ``BuildSpec``, and everything downstream (the
dry run, the push, the driver, the ``datasets`` builder) takes it and never resolves the recipe again.

The recipe has two states: the raw ``Recipe`` a file validates into, and the spec's, with the Hub push target of
the command line, the family's defaults (``builders.generators.resolve_family``) and, once the output's prompt lock
is read, prompt expansion's prompts. The models the build will load are checked once, here, before anything loads:
a missing model is exit 4 with every missing one listed, also when the model is missing so badly that its family
cannot be read.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import torch

from builders import hub
from builders.expansion import expansion_needs, locked_recipe
from builders.formats.choice import chosen
from builders.overrides import parse_override
from builders.recipe import Recipe, RecipeError
from builders.source import recipe_source
from builders.store.claims import lease_seconds
from builders.store.prompt_lock import read_prompt_lock
from builders.store.remote_dir import is_remote, no_push_from_store, store_url
from eval.scorers import scorer_model_refs
from synthcore.availability import ModelNeed, require_models
from synthcore.launch import local_device
from synthcore.logs import route_library_logs
from synthcore.model_refs import Placement, choose_dtype


class Mode(Enum):
    """What the command does with the spec."""

    BUILD = "build"
    DRY_RUN = "dry run"  # print the plan and its cost; load no model, write nothing
    PUSH_ONLY = "push only"  # push what is built; generate nothing, load no model
    PREVIEW = "preview"  # make and score the first images of every class into OUTPUT/preview/; publish no dataset
    EXPORT_ONLY = "export only"  # write the formats from a finished dataset; generate nothing, load no model


LOADS_MODELS = (Mode.BUILD, Mode.PREVIEW)  # the modes whose models are checked before anything loads


@dataclass(frozen=True)
class BuildSpec:
    """Everything a build needs to know, resolved once (``prepare``)."""

    recipe: Recipe  # family resolved, push target applied; the prompt lock's prompts once ``with_prompts`` read it
    output_dir: str  # a local path or a store's URL (``s3://…``)
    source: str  # the RECIPE argument as given: the push's retry command repeats it
    mode: Mode = Mode.BUILD
    overwrite: bool = False
    background: bool = True  # encode and write in a thread beside generation
    dataset_dir: Path | None = None  # the built dataset RECIPE named, when it named one (its recipe.yaml was read)

    def placement(self, device: torch.device) -> Placement:
        return placement_for(self.recipe, device)

    def locked(self) -> BuildSpec:
        """The spec with the prompts its output's lock holds (or the recipe records), read where the output lives."""
        return replace(self, recipe=locked_recipe(self.recipe, read_prompt_lock(self.output_dir)) or self.recipe)


def placement_for(recipe: Recipe, device: torch.device) -> Placement:
    """``model.dtype: auto`` on a GPU is the family's own (bfloat16 for FLUX.1, SD3, Sana; float16 otherwise)."""
    from builders.generators import family_of  # the generation stack: --push-only never loads it

    requested = recipe.model.dtype
    if requested == "auto" and device.type == "cuda":
        requested = family_of(recipe).gpu_dtype
    return Placement(device=str(device), dtype_name=choose_dtype(requested, device.type))


def prepare(args: argparse.Namespace) -> BuildSpec:
    """The spec of the command line ``args`` (``builders.cli.parse_args``). Raises what the command reports:
    ``RecipeError``/``SourceError``/``ValueError`` (exit 2), ``ModelUnavailable`` (exit 4), ``OutputDirError``
    (exit 5: a store that cannot be read)."""
    mode = _mode(args)
    lease_seconds()  # SYNTHDATA_LEASE_SECONDS checked before anything loads (a ValueError: exit 2)
    if is_remote(args.output_dir):  # one spelling of the store URL, refused before any work when it is no store's
        args.output_dir = store_url(args.output_dir)
    source = recipe_source(args.recipe, [parse_override(text) for text in args.overrides])
    recipe = _with_push_target(source.recipe, args, mode)
    if mode is Mode.EXPORT_ONLY:  # the recipe as the dataset records it, or as given: no family is read
        output_dir = args.output_dir or str(source.dataset_dir or Path("outputs") / recipe.name)
        return BuildSpec(recipe, output_dir, args.recipe, mode, dataset_dir=source.dataset_dir)
    if mode in LOADS_MODELS:
        _quiet_libraries()  # before the model check, which may build the tiny-random models
    if not (mode is Mode.PUSH_ONLY and source.dataset_dir):  # a built dataset's recipe.yaml is resolved already
        recipe = _resolved(recipe, args.recipe, mode)
    default_dir = source.dataset_dir if mode is Mode.PUSH_ONLY and source.dataset_dir else Path("outputs") / recipe.name
    output_dir = args.output_dir or str(default_dir)
    spec = BuildSpec(recipe, output_dir, args.recipe, mode, args.overwrite, args.background, source.dataset_dir)
    if mode is Mode.PUSH_ONLY:
        return spec.locked()  # the prompts its recipe.yaml records
    if mode in LOADS_MODELS:
        require_models(model_needs(spec))
    return spec


def _mode(args: argparse.Namespace) -> Mode:
    if args.export_only:
        return Mode.EXPORT_ONLY
    if args.dry_run:
        return Mode.DRY_RUN
    if args.push_only:
        return Mode.PUSH_ONLY
    return Mode.PREVIEW if args.preview else Mode.BUILD


def model_needs(spec: BuildSpec) -> list[ModelNeed]:
    """Every model the build loads: the generator's (its plug-in's ``model_needs``), the enabled scorers' and the
    language model, when this run will have to write prompts (no usable lock in the output)."""
    from builders.generators import family_of  # the generation stack: --push-only never loads it

    recipe, lock = spec.recipe, read_prompt_lock(spec.output_dir) if spec.recipe.prompt_expansion else None
    return [
        *family_of(recipe).model_needs(recipe, local_device().type),
        *scorer_model_refs(recipe.scoring),
        *(expansion_needs(recipe, lock, spec.overwrite) if lock else []),
    ]


def _with_push_target(recipe: Recipe, args: argparse.Namespace, mode: Mode) -> Recipe:
    """The recipe with the command line's Hub repo and formats; a push or formats that cannot happen are refused
    before anything runs."""
    recipe = hub.with_push_target(recipe, args.push_to_hub, args.private)
    if args.formats:
        recipe = recipe.model_copy(update={"formats": chosen(recipe.formats, args.formats)})
    if is_remote(args.output_dir) and any(choice.format.folder for choice in recipe.formats):
        raise ValueError(f"formats other than parquet are written to a local --output-dir, not {args.output_dir}")
    if mode is Mode.PUSH_ONLY and not recipe.hub.repo_id:
        raise ValueError(
            "--push-only: no repo to push to; give --push-to-hub USER/NAME or set hub.repo_id in the recipe"
        )
    if recipe.hub.repo_id and is_remote(args.output_dir):
        raise ValueError(no_push_from_store(args.output_dir))
    return recipe


def _resolved(recipe: Recipe, source: str, mode: Mode) -> Recipe:
    """The recipe with its family's defaults. A family that cannot be read because the model (or a scorer's) is
    missing is a missing model (exit 4, every missing one listed), not a bad recipe."""
    from builders.generators import resolve_family  # the generation stack: --push-only never loads it

    try:
        return resolve_family(recipe, source)
    except RecipeError:
        if mode in LOADS_MODELS:
            require_models([*_pipeline_needs(recipe), *scorer_model_refs(recipe.scoring)])
        raise


def _pipeline_needs(recipe: Recipe) -> list[ModelNeed]:
    """The pipeline's files as its plug-in lists them where its index can be read (a modular pipeline has no
    ``model_index.json``: asking for one hid every recipe error of a modular repo), else what any pipeline needs."""
    from builders.generators import family_of
    from builders.generators.base import pipeline_needs
    from builders.generators.sources import ModelIndexError

    try:
        return family_of(recipe).pipeline_needs(recipe)
    except ModelIndexError:
        return pipeline_needs(recipe)


def _quiet_libraries() -> None:
    """Model-loading progress bars from every process drown the build's own bar."""
    import datasets
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    route_library_logs()
