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
    parser.add_argument("-v", "--verbose", action="store_true", help="per-shard logs from every process")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "filelock", "urllib3", "PIL", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as err:
        print(err, file=sys.stderr)
        return 2
    output_dir = args.output_dir or str(Path("outputs") / recipe.name)
    _quiet_libraries()
    from builders.run import build

    report = build(recipe, output_dir, overwrite=args.overwrite, background=args.background)
    from accelerate import PartialState

    if PartialState().is_main_process:
        from eval.summary import format_table, read_summary

        print(format_table(read_summary(report.output_dir)))
        print(f"dataset written to {report.output_dir}: {report.images_generated} images made, "
              f"{report.images_found_done} found done, {report.seconds:.1f}s")
    return 0


def _quiet_libraries() -> None:
    """Model-loading progress bars from every process drown the build's own bar."""
    import datasets
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
