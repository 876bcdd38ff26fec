"""The training run's settings: one typed, frozen object built from the command line.

Defaults are the reference exercise's (SGD, lr 0.001, momentum 0.9, cross-entropy, ResNet18 with torchvision's
``IMAGENET1K_V1`` weights). Everything downstream receives a ``TrainConfig``, never an argparse namespace.
"""

from __future__ import annotations

import argparse
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BACKBONE = "IMAGENET1K_V1"
TRUE_CLASS_PROB_COLUMN = "clip_true_prob"


class TrainingError(ValueError):
    """A run that cannot go ahead: bad input named with what was expected."""


class TrainConfig(BaseModel):
    # Every float reaches the optimizer or a filter: finite (no inf, no NaN), and the optimizer's within bounds.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: str
    output_dir: str
    mode: Literal["probe", "finetune"] = "probe"
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=0.001, gt=0, le=10)
    momentum: float = Field(default=0.9, ge=0, le=1)
    seed: int = 0
    train_split: str = "train"
    eval_splits: list[str] | None = None  # None: every other split except filtered-out ``*_dropped`` ones
    image_column: str = "image"
    label_column: str = "label"
    backbone_weights: str = DEFAULT_BACKBONE
    min_scores: dict[str, float] = {}
    eval_dataset: str | None = None
    eval_dataset_splits: list[str] | None = None  # None: all of its splits
    label_map: dict[str, str] = {}
    cache_dir: str | None = None
    num_workers: int = Field(default=0, ge=0)
    push_to_hub: str | None = None
    hub_private: bool = False


def parse_assignments(text: str, option: str) -> dict[str, str]:
    """``a=b,c=d`` as a dict, or a clear error naming the option and the bad item."""
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise TrainingError(f"{option}: expected NAME=VALUE items separated by commas, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _min_scores(args: argparse.Namespace) -> dict[str, float]:
    scores = {}
    for text in args.min_score:
        for column, value in parse_assignments(text, "--min-score").items():
            try:
                scores[column] = float(value)
            except ValueError:
                raise TrainingError(f"--min-score: threshold of {column!r} must be a number, got {value!r}") from None
    if args.min_true_class_prob is not None:
        scores[TRUE_CLASS_PROB_COLUMN] = args.min_true_class_prob
    return scores


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train a ResNet18 linear probe (or fine-tune it) on an image-classification dataset and "
        "evaluate it. Runs under `accelerate launch` too (feature extraction is split between processes).",
    )
    parser.add_argument(
        "--dataset", required=True, help="local dataset directory or Hub dataset id (read with load_dataset)"
    )
    parser.add_argument("--output-dir", required=True, help="where the classifier, metrics and plots go")
    parser.add_argument(
        "--mode",
        choices=["probe", "finetune"],
        default="probe",
        help="probe: frozen backbone, cached features, train fc only (default); "
        "finetune: train everything, with augmentation",
    )
    _add_training_arguments(parser)
    _add_data_arguments(parser)
    parser.add_argument("--cache-dir", help="feature cache directory (default $SYNTHDATA_CACHE/probe-features)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for image decoding (default 0)")
    parser.add_argument(
        "--push-to-hub", metavar="REPO", help="upload the classifier with a model card to this Hub repo"
    )
    parser.add_argument("--hub-private", action="store_true", help="create the Hub repo private")
    return parser


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """How the probe trains: epochs, batch, optimiser, seed."""
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="batch size for training and feature extraction (default 32)"
    )
    parser.add_argument("--lr", type=float, default=0.001, help="SGD learning rate (default 0.001)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the head's init, the shuffling and a random backbone"
    )


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Which rows and columns it trains and evaluates on."""
    parser.add_argument("--train-split", default="train", help="split to train on (default train)")
    parser.add_argument(
        "--eval-splits", nargs="+", help="splits to evaluate every epoch (default: every other split but *_dropped)"
    )
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--label-column", default="label", help="a ClassLabel column (default label)")
    parser.add_argument(
        "--backbone-weights",
        default=DEFAULT_BACKBONE,
        help="torchvision ResNet18_Weights name (default IMAGENET1K_V1), 'none' for random init, "
        "or a local checkpoint file",
    )
    parser.add_argument(
        "--min-true-class-prob", type=float, help=f"train only on rows whose {TRUE_CLASS_PROB_COLUMN} is at least this"
    )
    parser.add_argument(
        "--min-score",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="train only on rows whose score COLUMN is at least VALUE (repeatable, comma-separated)",
    )
    parser.add_argument("--eval-dataset", help="another dataset (e.g. real photos of the same classes) to evaluate on")
    parser.add_argument("--eval-dataset-splits", nargs="+", help="its splits to evaluate (default: all)")
    parser.add_argument(
        "--label-map",
        default="",
        metavar="THEIRS=OURS,...",
        help="eval dataset label name -> training class name; identical names map by themselves",
    )


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    return TrainConfig(
        dataset=args.dataset,
        output_dir=args.output_dir,
        mode=args.mode,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        seed=args.seed,
        train_split=args.train_split,
        eval_splits=args.eval_splits,
        image_column=args.image_column,
        label_column=args.label_column,
        backbone_weights=args.backbone_weights,
        min_scores=_min_scores(args),
        eval_dataset=args.eval_dataset,
        eval_dataset_splits=args.eval_dataset_splits,
        label_map=parse_assignments(args.label_map, "--label-map"),
        cache_dir=args.cache_dir,
        num_workers=args.num_workers,
        push_to_hub=args.push_to_hub,
        hub_private=args.hub_private,
    )
