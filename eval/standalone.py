"""Standalone scoring: ``python -m eval DATASET`` adds the score columns to any image-classification dataset.

The dataset is anything ``load_dataset`` reads (a local directory or a Hub id) with an image column and a
``ClassLabel`` column; a real dataset scored this way can be compared with a synthetic one column for column.
Images and labels are written back unchanged (the encoded bytes are copied, never re-encoded) beside the new
columns, as a ``DatasetDict`` in the Hub layout (``data/<split>-NNNNN-of-NNNNN.parquet`` + card + summary).
CLIPScore compares each image with its ``prompt`` column when there is one, else with its class's label text in
the first label template ("a photo of a fox").
The output directory follows ``synthcore.outdir``: new, empty or an earlier output of ``python -m eval`` (replaced only
with ``--overwrite``); everything is written beside it and published at the end, so a failed run leaves it as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm.auto import tqdm

from eval.pictures import EMBEDDING_MAP_NAME, PICTURES_DIR, picture_alt
from eval.preprocess import rgb_tensor
from eval.quality import (
    PAIRS_FILE,
    QualityError,
    QualityReport,
    QualitySettings,
    open_reference,
    photos_in_reference,
    quality_pass,
)
from eval.report import describe
from eval.scorers import SCORERS, Scorers, ScoringSettings, enabled_scorers, scorer_features, scorer_model_refs
from eval.scorers.base import ScoringTask
from eval.summary import (
    SUMMARY_FILE,
    DatasetSummary,
    format_table,
    leakage_warning,
    quality_markdown,
)
from synthcore.availability import ModelNeed, ModelUnavailable, report_unavailable, require_models
from synthcore.cardmeta import CARD, layout_card_data, md, save_card
from synthcore.faults import report_fault, sigterm_raises
from synthcore.hub import describe_error, scrub
from synthcore.image_hashes import reference_hashes
from synthcore.images import DatasetRowsError, ImageError, SplitColumns, check_split, decode_image
from synthcore.layout import ROWS_PER_ROW_GROUP, DataLayout, hub_files, split_sizes
from synthcore.logs import configure_logging
from synthcore.model_refs import choose_dtype
from synthcore.outdir import Tool, check, claimed
from synthcore.yamlfile import ConfigFileError, load_yaml, read_text, validate

log = logging.getLogger("synthdata.eval")

SCORED_OUTPUT = Tool("python -m eval", (CARD, SUMMARY_FILE, PAIRS_FILE, PICTURES_DIR, "data"))


class InputError(ValueError):
    """A dataset or option that cannot be scored, with what was expected."""


class RecipeFileError(ConfigFileError):
    kind = "recipe"


class _RecipeClass(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    label_text: str | None = None
    imagenet_classes: list[str] = []


class RecipeScoringView(BaseModel):
    """The parts of a build recipe that scoring reads (the rest is the builder's, and ignored here)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    classes: dict[str, _RecipeClass]
    scoring: ScoringSettings = ScoringSettings()
    quality: QualitySettings = QualitySettings()

    def task(self) -> ScoringTask:
        return ScoringTask(
            class_names=tuple(self.classes),
            label_texts=tuple(spec.label_text or name for name, spec in self.classes.items()),
            imagenet_classes=tuple(tuple(spec.imagenet_classes) for spec in self.classes.values()),
        )


def read_recipe_view(path: str) -> RecipeScoringView:
    text = read_text(Path(path), RecipeFileError)
    return validate(RecipeScoringView, load_yaml(text, path, RecipeFileError), path, RecipeFileError, "recipe")


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
        epilog="python -m eval --compare A B ... --output-dir DIR: compare datasets of the same classes (eval.compare)",
    )
    parser.add_argument("dataset", help="a local dataset directory or a Hub dataset id (anything load_dataset reads)")
    parser.add_argument("--output-dir", help="where the scored dataset goes (default: outputs/<dataset name>-scored)")
    parser.add_argument("--overwrite", action="store_true", help="replace the data of an existing output directory")
    add_scoring_options(parser)
    return parser.parse_args(argv)


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """How a dataset is read and scored (``python -m eval --compare`` scores every dataset with these too)."""
    parser.add_argument("--image-column", default="image", help="the image column (default: image)")
    parser.add_argument("--label-column", default="label", help="the ClassLabel column (default: label)")
    parser.add_argument(
        "--prompt-column", default="prompt", help="texts for CLIPScore, used when the column exists (default: prompt)"
    )
    parser.add_argument(
        "--recipe", help="take label texts, ImageNet names and scorer settings from this recipe (same class names)"
    )
    for scorer in SCORERS.values():
        for option in scorer.cli_options:
            parser.add_argument(
                option.flag,
                action="append" if option.repeat else "store",
                dest=f"{scorer.name}__{option.field}",
                metavar=option.field.upper(),
                help=option.help,
            )
        parser.add_argument(
            f"--no-{scorer.name.replace('_', '-')}",
            action="store_true",
            dest=f"{scorer.name}__disabled",
            help=f"no {scorer.name} columns",
        )
    add_quality_options(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="images per scoring batch (default: 32)")
    parser.add_argument("--shard-size", type=int, default=1000, help="rows per Parquet file (default: 1000)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def scoring_settings(args: argparse.Namespace, base: ScoringSettings) -> ScoringSettings:
    """The recipe's (or default) scorer settings with the command line's choices over them."""
    values = {}
    for name, scorer in SCORERS.items():
        settings = getattr(base, name).model_dump()
        settings.update(
            {o.field: v for o in scorer.cli_options if (v := getattr(args, f"{name}__{o.field}")) is not None}
        )
        settings["enabled"] = settings["enabled"] and not getattr(args, f"{name}__disabled")
        values[name] = settings
    return ScoringSettings.model_validate(values)


def add_quality_options(parser: argparse.ArgumentParser) -> None:
    """The quality pass's options (duplicates, leakage, diversity, CMMD to real images; see ``eval.quality``)."""
    group = parser.add_argument_group("quality (duplicates, leakage, diversity, distance to real images)")
    group.add_argument(
        "--reference",
        metavar="REAL",
        help="a dataset of real images of the same classes (load_dataset: directory or Hub id): report CMMD to it",
    )
    group.add_argument(
        "--label-map", metavar="THEIRS=OURS,...", help="the reference's class names to ours (same names map alone)"
    )
    group.add_argument("--reference-split", help="only this split of the reference (default: all of them)")
    group.add_argument(
        "--near-duplicate-threshold",
        type=float,
        metavar="COSINE",
        help="CLIP cosine similarity from which two images are near-duplicates (default: 0.95)",
    )
    group.add_argument("--no-quality", action="store_true", help="no duplicate, diversity or CMMD pass")


def quality_settings(args: argparse.Namespace, base: QualitySettings) -> QualitySettings:
    """The recipe's (or default) quality settings with the command line's choices over them."""
    values = base.model_dump()
    if args.no_quality:
        values["enabled"] = False
    if args.near_duplicate_threshold is not None:
        values["near_duplicate_threshold"] = args.near_duplicate_threshold
    if args.reference:
        values["reference"] = {"dataset": args.reference, "label_map": parse_label_map(args.label_map or "")}
        if args.reference_split:
            values["reference"]["split"] = args.reference_split
    elif args.label_map or args.reference_split:
        raise InputError("--label-map and --reference-split describe a --reference; give one")
    return QualitySettings.model_validate(values)


def parse_label_map(text: str) -> dict[str, str]:
    """``theirs=ours,...`` as a dict."""
    pairs = [item for item in text.split(",") if item.strip()]
    bad = [item for item in pairs if item.count("=") != 1 or not all(side.strip() for side in item.split("="))]
    if bad:
        raise InputError(f"--label-map: {bad} are not THEIRS=OURS")
    return dict(tuple(side.strip() for side in item.split("=")) for item in pairs)


def assess_quality(
    out: Path, dataset: datasets.DatasetDict, settings: QualitySettings, scoring: ScoringSettings, label_column: str
) -> QualityReport | None:
    """The quality pass over the written dataset, in its split and row order (rows without an ``id`` are named
    ``<split>/<row index>``)."""
    if not settings.enabled:
        return None
    files = hub_files(out / "data")
    parts = [(split, path) for split in dataset for path in files.get(split, [])]
    if not parts:
        return None
    clip = scoring.clip.model if scoring.clip.enabled else None
    if settings.reference is not None and not (scoring.clip.enabled and scoring.clip.embeddings):
        raise InputError("--reference: CMMD compares the CLIP embeddings of both sets; CLIP is off")
    return quality_pass(parts, settings, clip, label_column=label_column)


def scoring_task(args: argparse.Namespace, class_names: list[str]) -> tuple[ScoringTask, ScoringSettings]:
    if not args.recipe:
        return ScoringTask.plain(class_names), scoring_settings(args, ScoringSettings())
    recipe = read_recipe_view(args.recipe)
    if list(recipe.classes) != class_names:
        raise InputError(
            f"{args.recipe}: the recipe's classes {list(recipe.classes)} are not the dataset's {class_names} "
            "(same names, same order)"
        )
    return recipe.task(), scoring_settings(args, recipe.scoring)


def models_needed(args: argparse.Namespace) -> list[ModelNeed]:
    """The scorers' models, each named by the option that chose it (or the recipe key, when the recipe did)."""
    recipe_scoring = read_recipe_view(args.recipe).scoring if args.recipe else ScoringSettings()
    flags = {f"scoring.{s.name}.{o.field}": o for s in SCORERS.values() for o in s.cli_options}

    def chosen_by(key: str) -> str:
        option = flags.get(key)
        given = option is not None and getattr(args, f"{key.split('.')[1]}__{option.field}") is not None
        if args.recipe and not given:
            return f"{key} (in {args.recipe})"
        return option.flag if option else key

    needs = scorer_model_refs(scoring_settings(args, recipe_scoring))
    return [dataclasses.replace(need, key=chosen_by(need.key)) for need in needs]


def check_columns(dataset: datasets.DatasetDict, columns: Columns, source: str) -> list[str]:
    """The class names, once every split is known to have the image and ClassLabel columns, and every row an image
    that opens within the pixel bound and a label of one of the classes (``synthcore.images.check_split``)."""
    for split, ds in dataset.items():
        image, label = ds.features.get(columns.image), ds.features.get(columns.label)
        if not isinstance(image, datasets.Image):
            raise InputError(
                f"{source}: split {split!r} has no Image column {columns.image!r} (columns: {ds.column_names}); "
                "use --image-column"
            )
        if not isinstance(label, datasets.ClassLabel):
            raise InputError(
                f"{source}: split {split!r} column {columns.label!r} is {label!r}, expected a ClassLabel; use "
                "--label-column"
            )
    names = [ds.features[columns.label].names for ds in dataset.values()]
    if any(n != names[0] for n in names):
        raise InputError(f"{source}: the splits have different class names: {names}")
    if not any(ds.num_rows for ds in dataset.values()):
        raise InputError(f"{source}: every split is empty ({', '.join(dataset)}); there is nothing to score")
    for split, ds in dataset.items():  # each image's header and label (scoring needs each image's true class)
        check_split(ds, split, SplitColumns(columns.image, columns.label, len(names[0])), source)
    return names[0]


def image_tensors(values: Sequence[dict], device: torch.device, split: str, first_row: int) -> list[torch.Tensor]:
    """Encoded images (any size or mode) as uint8 RGB (3, H, W) tensors on the device; one that does not decode
    (its header passed ``check_split``, its data is damaged) is an ``InputError`` naming its split and row."""
    tensors = []
    for row, value in enumerate(values, start=first_row):
        try:
            tensors.append(rgb_tensor(decode_image(value), device))
        except ImageError as err:
            raise InputError(f"split {split!r} row {row}: {err}") from None
    return tensors


def score_split(
    ds: datasets.Dataset,
    split: str,
    new: dict,
    scorers: Scorers,
    columns: Columns,
    out: Path,
    batch_size: int,
    layout: DataLayout,
) -> datasets.Features:
    """One split, written in ``layout``'s files of ``out/data/`` with the score columns ``new`` added;
    returns the written features. Rows without a prompt are compared with their class's text by CLIPScore."""
    from datasets.arrow_writer import ParquetWriter

    ds = ds.remove_columns([c for c in new if c in ds.column_names]).cast_column(
        columns.image, datasets.Image(decode=False)
    )
    features = datasets.Features({**ds.features, columns.image: datasets.Image(), **new})
    count = layout.counts[split]
    bar = tqdm(total=ds.num_rows, desc=f"scoring {split}", unit="img", dynamic_ncols=True)
    row = 0
    for index in range(count):
        path = out / "data" / layout.path(split, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = ParquetWriter(
            features=features, path=str(path), writer_batch_size=ROWS_PER_ROW_GROUP, embed_local_files=True
        )
        for batch in ds.shard(count, index, contiguous=True).iter(batch_size):
            labels = batch[columns.label]
            texts = batch.get(columns.prompt) or [None] * len(labels)
            images = image_tensors(batch[columns.image], scorers.device, split, row)
            writer.write_batch(features.encode_batch({**batch, **scorers.score(images, labels, texts)}))
            bar.update(len(labels))
            row += len(labels)
        writer.finalize()
        writer.close()
    bar.close()
    return features


def write_scored_card(
    out: Path,
    source: str,
    scoring: ScoringSettings,
    sizes: datasets.SplitDict,
    features: datasets.Features,
    summary: DatasetSummary,
    pictures: list[str],
    class_names: list[str],
) -> None:
    name = Path(source.rstrip("/")).name
    data = layout_card_data(f"{name} (scored)", features, sizes, tags=["scored"])
    hub = not Path(source).expanduser().exists()
    origin = f"[{md(source)}](https://huggingface.co/datasets/{source})" if hub else f"the local dataset `{md(name)}`"
    models = "\n".join(f"| {role} | {model} |" for role, model in (s.describe(v) for s, v in enabled_scorers(scoring)))
    images = "\n".join(
        f"![{md(picture_alt(path, class_names))}]({path})" for path in pictures if path != EMBEDDING_MAP_NAME
    )
    body = (
        f"# {md(name)}, scored\n\nThe images and labels of {origin}, unchanged "
        f"({sum(s.num_examples for s in sizes.values())} rows), "
        "with score columns added by `python -m eval` (what each score means: the project's docs/scores.md).\n\n"
        f"## Scored with\n\n| scorer | model |\n|---|---|\n{models}\n\n"
        f"## Rows and scores per split and class\n\n```\n{format_table(summary, rows_word='rows')}\n```\n\n"
        f"{quality_section(summary, pictures)}"
        f"## Pictures\n\n{images}\n"
    )
    save_card(out, data, body)


def quality_section(summary: DatasetSummary, pictures: list[str]) -> str:
    """The card's quality section, led by the leakage warning when splits repeat each other."""
    text = quality_markdown(summary, EMBEDDING_MAP_NAME if EMBEDDING_MAP_NAME in pictures else None)
    if not text:
        return ""
    warning = leakage_warning(summary)
    lead = f"> **Warning.** {md(warning)}\n\n" if warning else ""
    return f"## Is it any good? Duplicates, leakage, diversity\n\n{lead}{text}\n\n"


def prepare_output(out: Path, source: str, overwrite: bool) -> Path:
    """The absolute output directory, checked before any work: not the dataset being scored, and ours to write
    (``synthcore.outdir``; an earlier scored output there only with ``overwrite``)."""
    source_dir = Path(source).expanduser().resolve()
    if source_dir.exists() and source_dir in (out.resolve(), *out.resolve().parents):
        raise InputError(
            f"{out}: the output directory is (or is in) the dataset being scored; choose another --output-dir"
        )
    return check(out, SCORED_OUTPUT, replace=overwrite)


def load_source(source: str) -> datasets.DatasetDict:
    """The dataset to score, or an ``InputError`` naming it and what to give instead."""
    try:
        return datasets.load_dataset(source)
    except Exception as err:  # noqa: BLE001 - a missing path, an unknown id, no network: all end here
        what = (
            "cannot be read as a dataset"
            if Path(source).expanduser().exists()
            else "is neither a local directory nor a Hub dataset that can be reached"
        )
        raise InputError(
            f"{source} {what} ({describe_error(err)}). Give a dataset directory load_dataset reads (a built dataset, "
            "an image folder, Parquet files) or a Hub dataset id (network needed, HF_HUB_OFFLINE unset)."
        ) from None


def output_dir(args: argparse.Namespace) -> Path:
    return Path(args.output_dir or Path("outputs") / f"{Path(args.dataset.rstrip('/')).name}-scored")


def warn_of_reference_photos(dataset: datasets.DatasetDict, reference, class_names: list[str]) -> None:
    """A guided dataset (rows recording ``reference_sha256``) compared with a reference holding the photos its
    images started from: CMMD then measures the distance to the photos themselves, which the log says."""
    hashes = reference_hashes(dataset.values())
    found = photos_in_reference(reference, class_names, hashes) if hashes else set()
    if found:
        log.warning(
            "REFERENCE LEAKAGE: --reference holds %d of the photos this dataset's images started from (their "
            "SHA-256 is in its reference_sha256 column): CMMD to it is measured against the photos themselves",
            len(found),
        )


def score_dataset(args: argparse.Namespace) -> Path:
    columns = Columns(args.image_column, args.label_column, args.prompt_column)
    out = prepare_output(output_dir(args), args.dataset, args.overwrite)
    require_models(models_needed(args))
    dataset = load_source(args.dataset)
    task, scoring = scoring_task(args, check_columns(dataset, columns, args.dataset))
    quality = quality_settings(args, read_recipe_view(args.recipe).quality if args.recipe else QualitySettings())
    if quality.enabled and quality.reference is not None:
        open_reference(quality.reference, list(task.class_names))  # a bad reference fails before any scoring
        warn_of_reference_photos(dataset, quality.reference, list(task.class_names))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scorers = Scorers(task, scoring, device, getattr(torch, choose_dtype("auto", device.type)))
    new = scorer_features(task, scoring)
    with claimed(out, SCORED_OUTPUT, replace=args.overwrite) as owned, owned.staging() as stage:
        (stage / "data").mkdir()
        # no file for an empty split: load_dataset cannot read one
        layout = DataLayout({split: math.ceil(ds.num_rows / args.shard_size) for split, ds in dataset.items()})
        for split, ds in dataset.items():
            log.info("scoring %s: %d images", split, ds.num_rows)
            features = score_split(ds, split, new, scorers, columns, stage, args.batch_size, layout)
        report = assess_quality(stage, dataset, quality, scoring, columns.label)
        sizes = split_sizes(stage / "data", [split for split, ds in dataset.items() if ds.num_rows])
        described = describe(stage, features, list(dataset), list(sizes), report, label_column=columns.label)
        summary = described.summary
        write_scored_card(
            stage, args.dataset, scoring, sizes, features, summary, described.pictures, list(task.class_names)
        )
        owned.publish(stage)
    print(format_table(summary))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command(lambda: score_dataset(args), output_dir(args), "scored dataset written to")


def run_command(work: Callable[[], Path], output: Path, done: str) -> int:
    """``work`` (which returns its output directory) ended as every ``python -m eval`` run ends: exit 2 for bad
    input, the shared codes for a missing model and for faults (``synthcore.faults``), else ``done`` and 0."""
    configure_logging()
    try:
        with sigterm_raises():
            out = work()
    except (InputError, ConfigFileError, QualityError, DatasetRowsError) as err:
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return 2
    except ValidationError as err:
        print(f"error: invalid scoring options:\n{scrub(str(err))}", file=sys.stderr)
        return 2
    except ModelUnavailable as err:
        return report_unavailable(err)
    except BaseException as err:  # noqa: BLE001 - the faults every command ends alike; anything else is re-raised
        if (code := report_fault(err, output, "Nothing in the output directory was replaced.")) is None:
            raise
        return code
    print(f"{done} {out}")
    return 0
