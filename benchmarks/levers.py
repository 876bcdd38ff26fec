"""What the levers for diversity cost: planning a class whose templates combine into 10^12 prompts (sampled, never
expanded), and writing prompts with a language model (the tiny random Llama, or any other).

    python benchmarks/levers.py                                   # 10^12 product, 1,000 samples; tiny model
    python benchmarks/levers.py --samples 100000 --per-class 8 --classes 4

Figures printed:
- sampled plan: parsing the recipe (its 4,000 variable values included), drawing ``--samples`` prompts for each of
  ``--classes`` classes from a template of 4 variables of 1,000 values each, and making every shard key of a plan
  of ``--images`` images per class: time, and the Python memory allocated at the peak (tracemalloc);
- a guidance sweep's dry-run counts (images per value) for a plan of 10^8 images;
- expansion: loading the language model and writing ``--per-class`` prompts for each class (time per prompt).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builders.dryrun import images_by_guidance  # noqa: E402
from builders.expansion import write_prompts  # noqa: E402
from builders.plan import make_plan  # noqa: E402
from builders.recipe import parse_recipe  # noqa: E402

VALUES = 1000


def sampled_recipe(samples: int, classes: int, images: int, extra: str = "") -> str:
    values = "[" + ", ".join(f"v{i}" for i in range(VALUES)) + "]"
    names = ", ".join(f"c{i}: {{}}" for i in range(classes))
    return (
        f"name: bench\nseed: 1\ntemplates: ['a {{a}} {{b}} {{c}} {{d}} photo']\n"
        f"variables: {{a: {values}, b: {values}, c: {values}, d: {values}}}\n"
        f"template_samples: {samples}\nclasses: {{{names}}}\nsplits: {{train: {images}}}\n{extra}"
    )


def measure_sampled_plan(samples: int, classes: int, images: int) -> None:
    """Timed without tracemalloc (which slows hashing several times), then measured again under it."""
    text = sampled_recipe(samples, classes, images)
    start = time.perf_counter()
    recipe = parse_recipe(text)
    parsed = time.perf_counter()
    plan = make_plan(recipe, {})
    keys = [shard.key for shard in plan.shards]
    done = time.perf_counter()
    tracemalloc.start()
    again = make_plan(parse_recipe(text), {})
    assert [shard.key for shard in again.shards] == keys
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    prompts = sum(len(recipe.prompts_of(name)) for name in recipe.class_names)
    print(
        f"sampled plan: {classes} classes x {VALUES}^4 = 10^12 combinations each, {samples} drawn per class "
        f"({prompts} prompts); parse+validate (counts, draws nothing) {parsed - start:.2f} s, plan (draws the "
        f"prompts) with {len(keys)} shard keys ({plan.num_images} images) {done - parsed:.2f} s; peak Python memory "
        f"{peak / 2**20:.1f} MiB"
    )


def measure_sweep_counts(classes: int) -> None:
    sweep = "generation: {guidance_scale: [1.5, 3, 5, 7.5]}\n"
    text = sampled_recipe(100, classes, 100_000_000 // classes, sweep)
    recipe = parse_recipe(text)
    start = time.perf_counter()
    counts = images_by_guidance(recipe, make_plan(recipe, {}))
    seconds = time.perf_counter() - start
    shown = ", ".join(f"{value:g}: {count:,}" for value, count in counts.items())
    print(f"sweep dry-run counts for {sum(counts.values()):,} images: {seconds * 1000:.1f} ms ({shown})")


def measure_expansion(model: str, per_class: int, classes: int, max_new_tokens: int) -> None:
    names = ", ".join(f"c{i}: {{prompts: [x]}}" for i in range(classes))
    recipe = parse_recipe(
        f"name: bench\nclasses: {{{names}}}\nsplits: {{train: 1}}\n"
        f"prompt_expansion: {{model: {model}, per_class: {per_class}, max_new_tokens: {max_new_tokens}}}\n"
    )
    start = time.perf_counter()
    prompts = write_prompts(recipe)
    seconds = time.perf_counter() - start
    written = sum(len(p) for p in prompts.values())
    print(
        f"expansion with {model!r}: {written} prompts ({classes} classes x {per_class}, {max_new_tokens} new tokens "
        f"at most) in {seconds:.2f} s including the model load ({seconds / max(written, 1) * 1000:.0f} ms per prompt)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--images", type=int, default=100_000, help="images per class in the sampled plan")
    parser.add_argument("--model", default="tiny-random", help="prompt_expansion.model")
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    measure_sampled_plan(args.samples, args.classes, args.images)
    measure_sweep_counts(args.classes)
    measure_expansion(args.model, args.per_class, args.classes, args.max_new_tokens)


if __name__ == "__main__":
    main()
