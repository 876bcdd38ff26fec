"""Standalone scoring: ``python -m eval DATASET`` adds the score columns to any image-classification dataset.

The dataset is anything ``load_dataset`` reads (a local directory or a Hub id) with an image column and a
``ClassLabel`` column; a real dataset scored this way can be compared with a synthetic one column for column.
Images and labels are written back unchanged (the encoded bytes are copied, never re-encoded) beside the new
columns, as a ``DatasetDict`` in the Hub layout (``data/<split>-NNNNN-of-NNNNN.parquet`` + card + summary).
CLIPScore compares each image with its ``prompt`` column when there is one, else with its class's label text in
the first label template ("a photo of a fox").
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import datasets
import torch
from pydantic import ValidationError

from builders.card import layout_card_data, save_card
from builders.export import split_sizes
from builders.logs import configure_logging
from builders.models import choose_dtype
from builders.recipe import RecipeError, ScoringSettings, load_recipe
from builders.store import ROWS_PER_ROW_GROUP, hub_file_name
from eval.preprocess import rgb_tensor
from eval.scorers import Scorers, ScoringTask, task_features
from eval.summary import DatasetSummary, format_table, summarize, write_summary

log = logging.getLogger("synthdata.eval")


class InputError(ValueError):
    """A dataset or option that cannot be scored, with what was expected."""


@dataclass(frozen=True)
class Columns:
    image: str
    label: str
    prompt: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m eval",
        description="Score an image-classification dataset with CLIP (zero-shot, CLIPScore) and ResNet50 (ImageNet "
        "top-5): writes the dataset, unchanged, with the same score columns a build adds.",
    )
    parser.add_argument("dataset", help="a local dataset directory or a Hub dataset id (anything load_dataset reads)")
    parser.add_argument("--output-dir", help="where the scored dataset goes (default: outputs/<dataset name>-scored)")
    parser.add_argument("--overwrite", action="store_true", help="replace the data of an existing output directory")
    parser.add_argument("--image-column", default="image", help="the image column (default: image)")
    parser.add_argument("--label-column", default="label", help="the ClassLabel column (default: label)")
    parser.add_argument("--prompt-column", default="prompt", help="texts for CLIPScore, used when the column exists (default: prompt)")
    parser.add_argument("--recipe", help="take label texts, ImageNet names and scorer settings from this recipe (same class names)")
    parser.add_argument("--clip-model", help="CLIP Hub id, local directory, or tiny-random (default: openai/clip-vit-base-patch32)")
    parser.add_argument("--label-template", action="append", dest="label_templates", metavar="TEMPLATE",
                        help="text per class, with {label}; repeat to ensemble (default: 'a photo of a {label}')")
    parser.add_argument("--resnet50-weights", help="IMAGENET1K_V1, IMAGENET1K_V2 (default), DEFAULT, a state-dict file, or tiny-random")
    parser.add_argument("--no-clip", action="store_true", help="no CLIP columns")
    parser.add_argument("--no-resnet50", action="store_true", help="no ResNet50 columns")
    parser.add_argument("--batch-size", type=int, default=32, help="images per scoring batch (default: 32)")
    parser.add_argument("--shard-size", type=int, default=1000, help="rows per Parquet file (default: 1000)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    return parser.parse_args(argv)


def scoring_settings(args: argparse.Namespace, base: ScoringSettings) -> ScoringSettings:
    """The recipe's (or default) scorer settings with the command line's choices over them."""
    clip, resnet = base.clip.model_dump(), base.resnet50.model_dump()
    clip.update({k: v for k, v in (("model", args.clip_model), ("label_templates", args.label_templates)) if v is not None})
    resnet.update({"weights": args.resnet50_weights} if args.resnet50_weights else {})
    clip["enabled"] = clip["enabled"] and not args.no_clip
    resnet["enabled"] = resnet["enabled"] and not args.no_resnet50
    return ScoringSettings.model_validate({"clip": clip, "resnet50": resnet})


def scoring_task(args: argparse.Namespace, class_names: list[str]) -> ScoringTask:
    if not args.recipe:
        return ScoringTask(tuple(class_names), tuple(class_names), tuple(() for _ in class_names), scoring_settings(args, ScoringSettings()))
    recipe = load_recipe(args.recipe)
    if recipe.class_names != class_names:
        raise InputError(f"{args.recipe}: the recipe's classes {recipe.class_names} are not the dataset's {class_names} (same names, same order)")
    task = ScoringTask.from_recipe(recipe)
    return ScoringTask(task.class_names, task.label_texts, task.imagenet_classes, scoring_settings(args, recipe.scoring))


def check_columns(dataset: datasets.DatasetDict, columns: Columns, source: str) -> list[str]:
    """The class names, once every split is known to have the image and ClassLabel columns."""
    for split, ds in dataset.items():
        image, label = ds.features.get(columns.image), ds.features.get(columns.label)
        if not isinstance(image, datasets.Image):
            raise InputError(f"{source}: split {split!r} has no Image column {columns.image!r} (columns: {ds.column_names}); use --image-column")
        if not isinstance(label, datasets.ClassLabel):
            raise InputError(f"{source}: split {split!r} column {columns.label!r} is {label!r}, expected a ClassLabel; use --label-column")
        if min(ds[columns.label][:], default=0) < 0:
            raise InputError(f"{source}: split {split!r} has rows without a label (-1); scoring needs each image's true class")
    names = [ds.features[columns.label].names for ds in dataset.values()]
    if any(n != names[0] for n in names):
        raise InputError(f"{source}: the splits have different class names: {names}")
    return names[0]


def image_tensors(values: Sequence[dict], device: torch.device) -> list[torch.Tensor]:
    """Encoded images (any size or mode) as uint8 RGB (3, H, W) tensors on the device."""
    decoder = datasets.Image()
    return [rgb_tensor(decoder.decode_example(value), device) for value in values]


def score_split(ds: datasets.Dataset, split: str, task: ScoringTask, scorers: Scorers, columns: Columns, out: Path, batch_size: int, shard_size: int) -> datasets.Features:
    """One split, written as ``out/data/<split>-NNNNN-of-NNNNN.parquet`` with the score columns added; returns
    the written features."""
    from datasets.arrow_writer import ParquetWriter

    new = task_features(task)
    ds = ds.remove_columns([c for c in new if c in ds.column_names]).cast_column(columns.image, datasets.Image(decode=False))
    features = datasets.Features({**ds.features, columns.image: datasets.Image(), **new})
    template = task.settings.clip.label_templates[0]
    count = math.ceil(ds.num_rows / shard_size)  # no file for an empty split: load_dataset cannot read one
    for index in range(count):
        path = out / "data" / hub_file_name(split, index, count)
        writer = ParquetWriter(features=features, path=str(path), writer_batch_size=ROWS_PER_ROW_GROUP, embed_local_files=True)
        for batch in ds.shard(count, index, contiguous=True).iter(batch_size):
            labels = batch[columns.label]
            texts = batch.get(columns.prompt) or [template.format(label=task.label_texts[label]) for label in labels]
            scores = scorers.score(image_tensors(batch[columns.image], scorers.device), labels, texts)
            writer.write_batch(features.encode_batch({**batch, **scores}))
        writer.finalize()
        writer.close()
    return features


def write_scored_card(out: Path, source: str, dataset: datasets.DatasetDict, features: datasets.Features, summary: DatasetSummary) -> None:
    name = Path(source.rstrip("/")).name
    sizes = split_sizes(out / "data", [split for split, ds in dataset.items() if ds.num_rows])
    data = layout_card_data(f"{name} (scored)", features, sizes, tags=["scored"])
    body = (
        f"# {name}, scored\n\nThe images and labels of `{source}`, unchanged, with CLIP and ResNet50 score columns "
        f"added by `python -m eval` (see the project's README, \"Scores and filters\").\n\n```\n{format_table(summary)}\n```\n"
    )
    save_card(out, data, body)


def prepare_output(out: Path, source: str, overwrite: bool) -> None:
    if Path(source).expanduser().exists() and out.resolve() == Path(source).expanduser().resolve():
        raise InputError(f"{out}: the output directory is the dataset being scored; choose another --output-dir")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} exists and is not empty; pass --overwrite to replace its data, or choose another --output-dir")
    shutil.rmtree(out / "data", ignore_errors=True)
    (out / "data").mkdir(parents=True)


def score_dataset(args: argparse.Namespace) -> Path:
    columns = Columns(args.image_column, args.label_column, args.prompt_column)
    dataset = datasets.load_dataset(args.dataset)
    task = scoring_task(args, check_columns(dataset, columns, args.dataset))
    out = Path(args.output_dir or Path("outputs") / f"{Path(args.dataset.rstrip('/')).name}-scored")
    prepare_output(out, args.dataset, args.overwrite)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scorers = Scorers(task, device, getattr(torch, choose_dtype("auto", device.type)))
    for split, ds in dataset.items():
        log.info("scoring %s: %d images", split, ds.num_rows)
        features = score_split(ds, split, task, scorers, columns, out, args.batch_size, args.shard_size)
    summary = summarize(out, splits=list(dataset), label_column=columns.label)
    write_summary(out, summary)
    write_scored_card(out, args.dataset, dataset, features, summary)
    print(format_table(summary))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        out = score_dataset(args)
    except (InputError, RecipeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValidationError as err:
        print(f"error: invalid scoring options:\n{err}", file=sys.stderr)
        return 2
    print(f"scored dataset written to {out}")
    return 0
