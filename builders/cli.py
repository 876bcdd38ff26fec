"""``build.py``: the command line of the build. Thin: parse, load the recipe, call
``builders.distributed_build.build``, push."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from builders.claims import lease_seconds
from builders.expansion import ExpansionError, expansion_needs, locked_recipe, planned_recipe
from builders.formats.choice import chosen
from builders.overrides import parse_override
from builders.preview import DEFAULT_PREVIEW, preview_count, run_preview
from builders.recipe import Recipe, RecipeError
from builders.source import RecipeSource, SourceError, recipe_source
from eval.scorers import scorer_model_refs
from synthcore.availability import (
    DecoderMemory,
    ModelNeed,
    ModelUnavailable,
    diffusers_pipeline,
    lora_needs,
    report_unavailable,
    require_models,
    transformers_model,
)
from synthcore.faults import WRITE_FAILED, report_fault, sigterm_raises
from synthcore.hub import PUSH_FAILED, PushError, scrub
from synthcore.launch import local_device
from synthcore.logs import configure_logging, route_library_logs
from synthcore.model_refs import TINY_RANDOM, choose_dtype, is_local_path
from synthcore.outdir import OutputDirError
from synthcore.remote import is_remote, no_push_from_store, store_url

log = logging.getLogger("synthdata")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build.py",
        description="Build a synthetic image-classification dataset from a YAML recipe. "
        "Run with `accelerate launch build.py RECIPE` to use every GPU.",
    )
    parser.add_argument(
        "recipe",
        help="a YAML recipe (see recipes/), or a built dataset's directory or Hub id to rebuild it from its "
        "recipe.yaml",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY.PATH=VALUE",
        help="recipe values that replace the file's (YAML values), e.g. generation.num_inference_steps=4 "
        "splits.train=8 model.id=stabilityai/sdxl-turbo; checked like the file and recorded in recipe.yaml",
    )
    parser.add_argument(
        "--output-dir",
        help="where the dataset goes (default: outputs/<recipe name>; with --push-only "
        "and a dataset directory as RECIPE, that directory)",
    )
    parser.add_argument(
        "--push-to-hub",
        metavar="USER/NAME",
        help="after the build, upload the dataset to this Hub dataset repo (overrides hub.repo_id)",
    )
    parser.add_argument("--private", action="store_true", help="create the Hub repo private (overrides hub.private)")
    parser.add_argument(
        "--push-only", action="store_true", help="push the already built dataset; generate nothing, load no model"
    )
    parser.add_argument(
        "--formats",
        metavar="A,B",
        help="formats to write beside Parquet, overriding the recipe's `formats` (parquet, imagefolder, webdataset)",
    )
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="write the formats from a finished dataset (RECIPE: its directory, or a Hub id in the local cache); "
        "generate nothing, load no model",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="discard finished shards made under different settings"
    )
    parser.add_argument(
        "--no-background-writer",
        dest="background",
        action="store_false",
        help="encode and write images in the generating thread (same output, slower)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan's size per split and class and a GPU-time estimate; load no model",
    )
    parser.add_argument(
        "--preview",
        nargs="?",
        const=str(DEFAULT_PREVIEW),
        metavar="N",
        help=f"make and score only the first N (default {DEFAULT_PREVIEW}) planned train images of every class, "
        "exactly as the build will, into OUTPUT/preview/ (a contact sheet, the images, their scores); publishes "
        "nothing",
    )
    return preview_count(parser, parser.parse_intermixed_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    from builders import hub

    try:
        lease_seconds()  # SYNTHDATA_LEASE_SECONDS checked before anything loads (a ValueError: exit 2)
        if is_remote(args.output_dir):  # one spelling of the store URL, refused before any work when it is no store's
            args.output_dir = store_url(args.output_dir)
        source = recipe_source(args.recipe, [parse_override(text) for text in args.overrides])
        recipe = hub.with_push_target(source.recipe, args.push_to_hub, args.private)
        if args.formats:
            recipe = recipe.model_copy(update={"formats": chosen(recipe.formats, args.formats)})
        if is_remote(args.output_dir) and any(choice.format.folder for choice in recipe.formats):
            raise ValueError(f"formats other than parquet are written to a local --output-dir, not {args.output_dir}")
        if args.push_only and not recipe.hub.repo_id:
            raise ValueError(
                "--push-only: no repo to push to; give --push-to-hub USER/NAME or set hub.repo_id in the recipe"
            )
        if recipe.hub.repo_id and is_remote(args.output_dir):
            raise ValueError(no_push_from_store(args.output_dir))
    except (RecipeError, SourceError, ValueError) as err:
        print(scrub(str(err)), file=sys.stderr)
        return 2
    if args.export_only:
        return _export_only(recipe, source, args)
    if not (args.push_only or args.dry_run):
        _quiet_libraries()  # before the check, which may build the tiny-random models
        try:  # a missing generator is a missing model (exit 4, with the others), before its family is read
            require_models([*generator_needs(recipe), *scorer_model_refs(recipe.scoring)])
        except ModelUnavailable as err:
            return report_unavailable(err)
    try:
        if not (args.push_only and source.dataset_dir):  # a built dataset's recipe.yaml is resolved already
            from builders.generators import resolve_family

            recipe = resolve_family(recipe, args.recipe)
    except (RecipeError, ValueError) as err:
        print(scrub(str(err)), file=sys.stderr)
        return 2
    default_dir = source.dataset_dir if args.push_only and source.dataset_dir else Path("outputs") / recipe.name
    output_dir = args.output_dir or str(default_dir)
    try:
        if args.dry_run:
            print(dry_run(recipe, output_dir))
            return 0
        if args.push_only:
            recipe = locked_recipe(recipe, Path(output_dir)) or recipe  # the prompts its recipe.yaml records
            return _push(recipe, output_dir, args) if int(os.environ.get("RANK", "0")) == 0 else 0
    except ExpansionError as err:
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return 2
    except OutputDirError as err:  # a store that cannot be read (bucket, credentials): exit 5
        return report_fault(err, output_dir, "")
    if recipe.hub.repo_id and (warning := hub.missing_token_warning()):
        log.warning(warning)
    try:
        require_models([*models_needed(recipe), *expansion_needs(recipe, Path(output_dir), args.overwrite)])
    except ModelUnavailable as err:
        return report_unavailable(err)
    if args.preview:
        return run_preview(recipe, output_dir, args.preview)
    from builders.distributed_build import build
    from builders.export import EmptyDataset
    from builders.store import DamagedShards, FingerprintMismatch
    from synthcore.launch import WorldMismatch

    try:
        with sigterm_raises():
            report = build(recipe, output_dir, overwrite=args.overwrite, background=args.background)
    except (FingerprintMismatch, WorldMismatch, EmptyDataset, ExpansionError) as err:
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return 2
    except DamagedShards as err:
        print(
            f"error: {err}\nThey were just made again and failed at once: check the disk of {output_dir}.",
            file=sys.stderr,
        )
        return WRITE_FAILED
    except BaseException as err:  # noqa: BLE001 - the faults every command ends alike; anything else is re-raised
        kept = (
            f"Finished shards are kept in {output_dir}; run the same command again to resume (only the rest is made)."
        )
        if (code := report_fault(err, output_dir, kept)) is None:
            raise
        return code
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    from eval.summary import format_table

    print(format_table(report.summary))
    for written in report.formats:
        print(written.line())
    print(
        f"dataset written to {report.output_dir}: {report.images_generated} images made, "
        f"{report.images_found_done} found done, {len(report.safety_dropped)} dropped by the safety checker, "
        f"{len(report.damaged)} damaged shard(s) set aside and made again, {report.seconds:.1f}s"
    )
    if not recipe.hub.repo_id:
        return 0
    return _push(locked_recipe(recipe, Path(output_dir)) or recipe, output_dir, args)


def _export_only(recipe: Recipe, source: RecipeSource, args: argparse.Namespace) -> int:
    """``--export-only``: the formats from the finished dataset, then the push when one is asked for."""
    from builders.formats.command import dataset_root, export_only

    output_dir = args.output_dir or str(source.dataset_dir or Path("outputs") / recipe.name)
    try:
        root = dataset_root(args.recipe, source.dataset_dir, output_dir)
    except ValueError as err:  # no such dataset in the cache
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return 2
    code = export_only(recipe, root, output_dir, recipe.formats)
    return _push(recipe, output_dir, args) if code == 0 and recipe.hub.repo_id else code


def _push(recipe: Recipe, output_dir: str, args: argparse.Namespace) -> int:
    """Push and say how it went: 0 pushed, 2 nothing complete to push, 3 the Hub failed (the data is safe)."""
    from builders.hub import IncompleteDataset, push_dataset

    try:
        url = push_dataset(Path(output_dir), recipe)
    except IncompleteDataset as err:
        print(f"{err}\nNothing was pushed.", file=sys.stderr)
        return 2
    except PushError as err:
        retry = [
            "python",
            "build.py",
            args.recipe,
            "--output-dir",
            output_dir,
            "--push-only",
            "--push-to-hub",
            recipe.hub.repo_id,
        ]
        print(
            f"{err}\nThe dataset in {output_dir} is complete. Retry the push alone with:\n  "
            f"{shlex.join(retry + ['--private'] * recipe.hub.private)}",
            file=sys.stderr,
        )
        return PUSH_FAILED
    print(f"dataset pushed to {url}")
    return 0


def models_needed(recipe: Recipe) -> list[ModelNeed]:
    """The generator (with its safety checker when the recipe runs it), whether its VAE can decode one image of
    the recipe's size on this device, and the enabled scorers' models."""
    settings, gen = recipe.model, recipe.generation
    own_checker = settings.safety_checker and _ships_safety_checker(settings.id, settings.revision)
    standalone = (
        []
        if own_checker or not settings.safety_checker
        else [
            transformers_model("model.safety_checker_id", settings.safety_checker_id, "safety checker", processor=False)
        ]
    )
    device_type = local_device().type
    decoder = DecoderMemory(
        key="generation.height, generation.width",
        ref=settings.id,
        what="pipeline",
        revision=settings.revision,
        height=gen.height,
        width=gen.width,
        dtype_name=choose_dtype(settings.dtype, device_type),
        device_type=device_type,
    )
    return [*generator_needs(recipe), *standalone, decoder, *scorer_model_refs(recipe.scoring)]


def generator_needs(recipe: Recipe) -> list[ModelNeed]:
    """The generator's pipeline, with its own safety checker when it ships one and the recipe runs it, and the
    LoRA adapters fused into it (each checked against the pipeline's denoiser: a LoRA for another architecture is
    found here, not after the models load)."""
    settings = recipe.model
    own_checker = settings.safety_checker and _ships_safety_checker(settings.id, settings.revision)
    pipeline = diffusers_pipeline("model.id", settings.id, settings.revision, own_checker, "model.safety_checker")
    return [pipeline, *lora_needs("model.loras", settings.loras, settings.id, settings.revision)]


def _ships_safety_checker(model_id: str, revision: str | None) -> bool:
    from builders.generators.sources import ships_safety_checker  # the generation stack loads only to build

    return ships_safety_checker(model_id, revision)


def dry_run(recipe, output_dir: str) -> str:
    from builders.distributed_build import placement_for
    from builders.dryrun import describe
    from builders.objstore import output_store
    from builders.plan import content_fingerprint, make_plan
    from builders.store import OutputDir

    # The plan without a datasets builder, whose config hashing alone takes seconds for thousands of classes.
    placement = placement_for(recipe, local_device())
    recipe, note = planned_recipe(recipe, Path(output_dir)) if recipe.prompt_expansion else (recipe, None)
    fingerprint = content_fingerprint(recipe, placement.device.split(":")[0], placement.dtype_name)
    store = output_store(output_dir, 0) if is_remote(output_dir) else OutputDir(output_dir)  # a store's shards count
    plan_text = describe(recipe, make_plan(recipe, fingerprint), store)
    return "\n".join([plan_text, *([note] if note else []), *architecture_and_download(recipe)])


def architecture_and_download(recipe: Recipe) -> list[str]:
    """Whose architecture the estimate is (SD 1.x/2.x, whose UNets differ), and how to fetch a missing model."""
    from builders.dryrun import download_line, other_downloads_line

    notes = [_architecture_note(recipe)] if recipe.model.pipeline == "StableDiffusionPipeline" else []
    return notes + [line for line in (download_line(recipe), other_downloads_line(recipe)) if line]


SD15_UNET = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768}


def _architecture_note(recipe: Recipe) -> str:
    """Whose architecture the estimate is: it is SD 1.5's; say whether the recipe's model has that UNet, read from
    its ``unet/config.json`` where that is on disk (nothing is downloaded or loaded)."""
    ref = recipe.model.id
    if ref == TINY_RANDOM:
        return (
            f"model.id {TINY_RANDOM!r} is a tiny random test pipeline: the estimate is for SD 1.5's architecture, "
            "far above what it costs"
        )
    if is_local_path(ref):
        path = Path(ref).expanduser() / "unet" / "config.json"
    else:
        cached = try_to_load_from_cache(ref, "unet/config.json", revision=recipe.model.revision)
        path = Path(cached) if isinstance(cached, str) else None
    try:
        unet = json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        unet = None
    if unet is None:
        return f"model.id {ref!r}: its UNet config is not on disk; the estimate assumes SD 1.5's architecture"
    found = {key: unet.get(key) for key in SD15_UNET}
    if found == SD15_UNET:
        return f"model.id {ref!r} has SD 1.5's UNet architecture: the estimate is for it"
    shown = ", ".join(f"{key} {value}" for key, value in found.items())
    return f"model.id {ref!r} has another UNet ({shown}): the estimate is SD 1.5's, not its own"


def _quiet_libraries() -> None:
    """Model-loading progress bars from every process drown the build's own bar."""
    import datasets
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    route_library_logs()
