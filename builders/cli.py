"""``build.py``: the command line of the build. Thin: parse, load the recipe, call ``builders.run.build``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from builders.recipe import RecipeError, load_recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build.py",
        description="Build a synthetic image-classification dataset from a YAML recipe. "
        "Run with `accelerate launch build.py RECIPE` to use every GPU.",
    )
    parser.add_argument("recipe", help="path of a YAML recipe (see recipes/)")
    parser.add_argument("--output-dir", help="where the dataset goes (default: outputs/<recipe name>)")
    parser.add_argument("--overwrite", action="store_true", help="discard finished shards made under different settings")
    parser.add_argument("--no-background-writer", dest="background", action="store_false",
                        help="encode and write images in the generating thread (same output, slower)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan's size per split and class and a GPU-time estimate; load no model")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "filelock", "urllib3", "PIL", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as err:
        print(err, file=sys.stderr)
        return 2
    output_dir = args.output_dir or str(Path("outputs") / recipe.name)
    if args.dry_run:
        print(dry_run(recipe, output_dir))
        return 0
    _quiet_libraries()
    from builders.run import WorldMismatch, build
    from builders.store import FingerprintMismatch

    try:
        report = build(recipe, output_dir, overwrite=args.overwrite, background=args.background)
    except (FingerprintMismatch, WorldMismatch) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"dataset written to {report.output_dir}: {report.images_generated} images made, "
              f"{report.images_found_done} found done, {len(report.safety_dropped)} dropped by the safety checker, "
              f"{report.seconds:.1f}s")
    return 0


def dry_run(recipe, output_dir: str) -> str:
    from builders.builder import SyntheticImages
    from builders.dryrun import describe
    from builders.run import local_device, placement_for
    from builders.store import OutputDir

    builder = SyntheticImages(recipe=recipe, placement=placement_for(recipe, local_device()), name=recipe.name)
    return describe(recipe, builder.plan(), OutputDir(output_dir))


def _quiet_libraries() -> None:
    """Model-loading progress bars from every process drown the build's own bar."""
    import datasets
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
