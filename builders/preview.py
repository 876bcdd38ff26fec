"""``build.py RECIPE --preview [N]``: look at a few images of every class before the big build.

The preview makes the first N planned images of every class of the train split (of the first split when there is
no ``train``), rounded up to whole batches: the build's own shards, cut short, made by the build's own code with the
same seeds, prompts, batches and settings, so each preview image is pixel for pixel the row the full build then
makes (and stores, with ``output.image_format: png``). It scores them with the recipe's scorers and writes, under
``<output>/preview/``:

- ``images/<row id>.png``: every image made (row ids are ``split/class/index``);
- ``preview.png``: a contact sheet, one row per class (the first ``SHEET_CLASSES``), each image captioned with
  CLIP's probability of the true class;
- ``preview.json``: per image its row id, class, prompt, seed, guidance and scores, and the measured time.

It claims the output directory as the build does (``build.py``'s marker and lock), publishes ``preview/`` alone,
and never ``data/``: a full build into the same directory afterwards is neither refused nor changed by it (it
leaves ``preview/`` in place). A recipe with ``prompt_expansion`` has its prompts written to
``prompts.lock.yaml`` first, as the build would, so the build then uses the very prompts the preview showed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders.overrides import looks_like_override
from builders.recipe import Recipe
from builders.store.remote_dir import is_remote
from synthcore.faults import report_fault, sigterm_raises
from synthcore.hub import scrub

DEFAULT_PREVIEW = 4
PREVIEW_DIR = "preview"
PREVIEW_SPLIT = "train"
SHEET_CLASSES = 100  # rows of the contact sheet at most; every image is in images/ and preview.json


@dataclass
class PreviewReport:
    sheet: Path
    split: str
    images: int
    classes: int
    seconds: float  # making and scoring the images, models already loaded
    loading_seconds: float
    device: str
    to_make: int  # images of the full build not yet finished in the output directory
    estimate_lines: list[str]

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(self.images, 1)


def preview_count(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """``--preview``'s N as an int. A bare ``--preview`` followed by an override took it as its value: it goes back
    to the overrides."""
    if args.preview is None:
        return args
    if not args.preview.isdigit():
        if not looks_like_override(args.preview):
            parser.error(f"--preview: expected a number of images per class, got {args.preview!r}")
        args.overrides.append(args.preview)
        args.preview = str(DEFAULT_PREVIEW)
    args.preview = int(args.preview)
    if args.preview < 1:
        parser.error("--preview: give at least 1 image per class")
    if args.dry_run or args.push_only or args.export_only:
        parser.error(
            "--preview makes images and publishes nothing: give it without --dry-run, --push-only and --export-only"
        )
    return args


def run_preview(recipe: Recipe, output_dir: str, count: int) -> int:
    """Make, score and show the preview; print where it is and what the full build will take. The exit code."""
    from builders.expansion import ExpansionError

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        print("error: --preview runs on one process: run it with `python build.py`, not a launcher", file=sys.stderr)
        return 2
    if is_remote(output_dir):
        print(f"error: --preview writes a local directory, not {output_dir}; give --output-dir a path", file=sys.stderr)
        return 2
    try:
        with sigterm_raises():
            report = make_preview(recipe, output_dir, count)
    except ExpansionError as err:
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return 2
    except BaseException as err:  # noqa: BLE001 - the faults every command ends alike; anything else is re-raised
        if (code := report_fault(err, output_dir, "The dataset's files were not touched.")) is None:
            raise
        return code
    print("\n".join(preview_lines(report)))
    return 0


def preview_lines(report: PreviewReport) -> list[str]:
    from builders.dryrun import duration

    per_image = report.seconds_per_image
    return [
        f"preview: {report.images} images of {report.split} ({report.classes} classes) made and scored in "
        f"{report.seconds:.1f} s on {report.device}: {per_image:.3g} s per image (models loaded in "
        f"{report.loading_seconds:.1f} s, not counted)",
        f"contact sheet: {report.sheet} (images in {report.sheet.parent / 'images'}, prompts, seeds and scores in "
        f"{report.sheet.parent / 'preview.json'})",
        f"full build: {report.to_make} images to make: about {duration(per_image * report.to_make)} of this device "
        "at the measured pace (one process; N processes take about 1/N of it)",
        *report.estimate_lines,
    ]


def make_preview(recipe: Recipe, output_dir: str, count: int) -> PreviewReport:
    """The preview made and published under the build's claim of ``output_dir``."""
    from builders.builder import SyntheticImages
    from builders.dryrun import finished_images
    from builders.expansion import resolve_lock
    from builders.export import BUILD_OUTPUT
    from builders.spec import placement_for
    from builders.store.local import OutputDir
    from synthcore.launch import start_state

    state = start_state()
    store = OutputDir(output_dir)
    with store.claim(BUILD_OUTPUT, keep=store.has_shards) as owned:
        recipe = resolve_lock(recipe, store, state, owned, overwrite=False)
        builder = SyntheticImages(recipe=recipe, placement=placement_for(recipe, state.device), name=recipe.name)
        plan = builder.plan()
        split = PREVIEW_SPLIT if PREVIEW_SPLIT in plan.splits else plan.splits[0]
        shards = preview_shards(plan.shards_of(split), count)
        started = time.perf_counter()
        builder.models()
        loaded = time.perf_counter()
        rows = [row for shard in shards for batch in builder.shard_rows(shard) for row in batch.rows]
        seconds = time.perf_counter() - loaded
        with owned.staging() as stage:
            write_preview(stage / PREVIEW_DIR, builder.recipe, split, rows, seconds / max(len(rows), 1))
            owned.publish(stage, names={PREVIEW_DIR})
        to_make = plan.num_images - finished_images(plan, store)
    return PreviewReport(
        sheet=store.root / PREVIEW_DIR / "preview.png",
        split=split,
        images=len(rows),
        classes=len(builder.recipe.class_names),
        seconds=seconds,
        loading_seconds=loaded - started,
        device=_device_name(state.device),
        to_make=to_make,
        estimate_lines=flop_estimate_lines(builder.recipe, plan),
    )


def preview_shards(shards, count: int) -> list:
    """The split's first ``count`` images of every class, as the build's shards cut short after whole batches (a
    batch's numerics may depend on its size, so only whole batches make the build's very pixels)."""
    chosen, taken = [], {}
    for shard in shards:
        left = count - taken.get(shard.class_name, 0)
        if left <= 0:
            continue
        batches = -(-min(left, shard.size) // shard.batch_size)
        cut = dataclasses.replace(shard, stop=min(shard.stop, shard.start + batches * shard.batch_size))
        chosen.append(cut)
        taken[shard.class_name] = taken.get(shard.class_name, 0) + cut.size
    return chosen


def flop_estimate_lines(recipe: Recipe, plan) -> list[str]:
    """The dry run's figures for the whole plan, to set beside the measured pace."""
    from builders.dryrun import H100_TFLOPS, duration, estimate, images_by_guidance
    from builders.generators import family_of

    if family_of(recipe).flops is None:
        return []
    total_tflops, plain_seconds = estimate(recipe, images_by_guidance(recipe, plan))
    return [
        f"dry run's estimate for all {plan.num_images} images: {total_tflops / 1000:.1f} PFLOPs; in H100-time "
        f"floor {duration(total_tflops / H100_TFLOPS)}, plain diffusers pace {duration(plain_seconds)}"
    ]


def write_preview(directory: Path, recipe: Recipe, split: str, rows: list[dict], seconds_per_image: float) -> None:
    """The images (lossless PNG of the generated pixels), ``preview.json`` and the contact sheet."""
    import PIL.Image

    from builders.rows import REFERENCE_FEATURES, GeneratedRow

    names = recipe.class_names
    generated = {field.name for field in dataclasses.fields(GeneratedRow)} | set(REFERENCE_FEATURES)
    entries = []
    for row in rows:
        path = directory / "images" / f"{row['id']}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(row["image"]).save(path)
        entries.append(
            {
                "id": row["id"],
                "class": names[row["label"]],
                "prompt": row["prompt"],
                "seed": row["seed"],
                "guidance_scale": row["guidance_scale"],
                "image": f"images/{row['id']}.png",
                "scores": {key: _plain(value) for key, value in row.items() if _is_score(key, generated)},
            }
            | {key: _plain(row[key]) for key in REFERENCE_FEATURES if recipe.guided}
        )
    summary = {"recipe": recipe.name, "split": split, "seconds_per_image": round(seconds_per_image, 4)}
    (directory / "preview.json").write_text(
        json.dumps({**summary, "rows": entries}, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    contact_sheet(recipe, split, rows).save(directory / "preview.png")


def contact_sheet(recipe: Recipe, split: str, rows: list[dict]):
    """One row per class (the first ``SHEET_CLASSES``), each image captioned with CLIP's p(true) where scored."""
    import PIL.Image

    from eval.pictures import Grid, GridRow, draw_grid
    from eval.scorers.clip import TRUE_PROB

    names = recipe.class_names[:SHEET_CLASSES]
    by_class: dict[int, list[dict]] = {}
    for row in rows:
        by_class.setdefault(row["label"], []).append(row)
    grid_rows = []
    for label, name in enumerate(names):
        made = by_class.get(label, [])
        captions = [f"p(true) = {row[TRUE_PROB]:.2f}" if TRUE_PROB in row else "" for row in made]
        note = None if made else "no image kept (the safety checker dropped them)"
        grid_rows.append(GridRow(name, [PIL.Image.fromarray(row["image"]) for row in made], captions, note))
    more = len(recipe.class_names) - len(names)
    title = f"{recipe.name}: preview of {split}" + (
        f" (first {len(names)} classes; {more} more in images/)" * bool(more)
    )
    return draw_grid(Grid(title, grid_rows))


def _is_score(column: str, generated: set[str]) -> bool:
    """A scorer's column worth reading in the JSON (not an image embedding's hundreds of numbers)."""
    return column not in generated and not column.endswith("_embedding")


def _plain(value: Any) -> Any:
    """A score as JSON: numpy scalars as Python numbers."""
    return value.item() if hasattr(value, "item") else value


def _device_name(device) -> str:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
