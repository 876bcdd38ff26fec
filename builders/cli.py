"""``build.py``: the command line of the build. Thin: parse, resolve once (``builders.spec.prepare``), then one of
dry run, push only, or build (``builders.distributed_build.build``) and push; each failure its exit code."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from builders.expansion import ExpansionError
from builders.preview import DEFAULT_PREVIEW, preview_count, run_preview
from builders.recipe import Recipe, RecipeError
from builders.source import SourceError
from builders.spec import BuildSpec, Mode, prepare
from synthcore.availability import ModelUnavailable, report_unavailable
from synthcore.faults import WRITE_FAILED, report_fault, sigterm_raises
from synthcore.hub import PUSH_FAILED, PushError, scrub
from synthcore.logs import configure_logging
from synthcore.outdir import OutputDirError

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
    _add_publishing(parser)
    _add_running(parser)
    return preview_count(parser, parser.parse_intermixed_args(argv))


def _add_publishing(parser: argparse.ArgumentParser) -> None:
    """Where the dataset goes besides the output directory: the Hub, other formats."""
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


def _add_running(parser: argparse.ArgumentParser) -> None:
    """How the build runs, or what it does instead (a dry run, a preview)."""
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        spec = prepare(args)
        if spec.mode is Mode.DRY_RUN:
            from builders.dryrun import dry_run

            print(dry_run(spec))
            return 0
        if spec.mode is Mode.PUSH_ONLY:
            return push(spec) if int(os.environ.get("RANK", "0")) == 0 else 0
        if spec.mode is Mode.PREVIEW:
            return run_preview(spec.recipe, spec.output_dir, args.preview)
        if spec.mode is Mode.EXPORT_ONLY:
            return _export_only(spec)
    except (RecipeError, SourceError, ValueError, ModelUnavailable, OutputDirError) as err:
        return _refused(err, args.output_dir or "")
    return _build_and_push(spec)


def _refused(err: Exception, output_dir: str) -> int:
    """The exit code of a command refused before anything was built, its message printed: 2 bad input, 4 a model
    missing, 5 an output that cannot be used."""
    if isinstance(err, ModelUnavailable):
        return report_unavailable(err)
    if isinstance(err, OutputDirError):  # a store that cannot be read (bucket, credentials)
        return report_fault(err, output_dir, "")
    print(f"error: {scrub(str(err))}" if isinstance(err, ExpansionError) else scrub(str(err)), file=sys.stderr)
    return 2


def _build_and_push(spec: BuildSpec) -> int:
    """Build, say how it went, then push when the recipe names a repo."""
    from builders import hub

    if spec.recipe.hub.repo_id and (warning := hub.missing_token_warning()):
        log.warning(warning)
    code = _build(spec)
    if code is not None:
        return code
    return push(spec) if spec.recipe.hub.repo_id else 0


def _build(spec: BuildSpec) -> int | None:
    """Run the build; None when it finished (the main process printed its summary), else the exit code."""
    from builders.distributed_build import build
    from builders.export import EmptyDataset
    from builders.store.local import DamagedShards, FingerprintMismatch
    from synthcore.launch import WorldMismatch

    try:
        with sigterm_raises():
            report = build(spec)
    except (FingerprintMismatch, WorldMismatch, EmptyDataset, ExpansionError) as err:
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return 2
    except DamagedShards as err:
        print(
            f"error: {err}\nThey were just made again and failed at once: check the disk of {spec.output_dir}.",
            file=sys.stderr,
        )
        return WRITE_FAILED
    except BaseException as err:  # noqa: BLE001 - the faults every command ends alike; anything else is re-raised
        kept = (
            f"Finished shards are kept in {spec.output_dir}; run the same command again to resume (only the rest is "
            "made)."
        )
        if (code := report_fault(err, spec.output_dir, kept)) is None:
            raise
        return code
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    from eval.summary import format_table

    print(format_table(report.summary))
    print(
        f"dataset written to {report.output_dir}: {report.images_generated} images made, "
        f"{report.images_found_done} found done, {len(report.safety_dropped)} dropped by the safety checker, "
        f"{len(report.damaged)} damaged shard(s) set aside and made again, {report.seconds:.1f}s"
    )
    return None


def _export_only(spec: BuildSpec) -> int:
    """``--export-only``: the formats from the finished dataset, then the push when one is asked for."""
    from builders.formats.command import dataset_root, export_only

    try:
        root = dataset_root(spec.source, spec.dataset_dir, spec.output_dir)
    except ValueError as err:  # no such dataset in the cache
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return 2
    code = export_only(spec.recipe, root, spec.output_dir, spec.recipe.formats)
    return _push(spec.recipe, spec) if code == 0 and spec.recipe.hub.repo_id else code


def push(spec: BuildSpec) -> int:
    """Push the built dataset, its recipe with the prompts its output's lock holds."""
    return _push(spec.locked().recipe, spec)


def _push(recipe: Recipe, spec: BuildSpec) -> int:
    """Push and say how it went: 0 pushed, 2 nothing complete to push, 3 the Hub failed (the data is safe)."""
    from builders.hub import IncompleteDataset, push_dataset

    output_dir = spec.output_dir
    try:
        url = push_dataset(Path(output_dir), recipe)
    except IncompleteDataset as err:
        print(f"{err}\nNothing was pushed.", file=sys.stderr)
        return 2
    except PushError as err:
        retry = [
            "python",
            "build.py",
            spec.source,
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
