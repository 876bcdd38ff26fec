"""Datasets in, batches out: loading, score filters, eval-label mapping and the image DataLoader.

Any dataset ``load_dataset`` reads works (our Parquet layout, a Hub id, an image folder of real photos), and so
does a ``save_to_disk`` directory. The label column must be a ``ClassLabel``: its names are the classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader

from synthcore.hub import describe_error
from synthcore.images import DatasetRowsError, ImageError, SplitColumns, check_split, decode_image
from training.config import TrainConfig, TrainingError


@dataclass
class Split:
    """One split to train or evaluate on; ``to_ours`` maps its label indices to the training classes' indices."""

    name: str
    dataset: datasets.Dataset
    to_ours: torch.Tensor | None = None

    def our_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return labels if self.to_ours is None else self.to_ours[labels]


def load_splits(ref: str) -> datasets.DatasetDict:
    """Every split of a local directory or Hub dataset."""
    try:
        if (Path(ref).expanduser() / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(Path(ref).expanduser()))
        loaded = datasets.load_dataset(ref)
    except Exception as err:  # noqa: BLE001 - a missing path, a damaged directory (datasets' own IndexError on a
        # saved empty split), no network: all end here, named
        raise TrainingError(f"cannot load dataset {ref!r}: {describe_error(err)}") from None
    return loaded


def pick(splits: datasets.DatasetDict, name: str, source: str) -> datasets.Dataset:
    if name not in splits:
        raise TrainingError(f"{source}: no split {name!r} (it has: {', '.join(splits)})")
    return splits[name]


def default_eval_splits(splits: datasets.DatasetDict, train_split: str) -> list[str]:
    """Every split but the training one and the ``*_dropped`` splits a filtered build sets aside."""
    return [s for s in splits if s != train_split and not s.endswith("_dropped")]


def class_names(dataset: datasets.Dataset, config: TrainConfig, source: str, split: str) -> list[str]:
    """The class names of the label column, which must be a ClassLabel; also checks the image column, that the
    split has rows, and every row's image header and label (``synthcore.images.check_split``): a bad row fails
    here, before any model is made."""
    features, where = dataset.features, f"{source} [{split}]"
    for column in (config.image_column, config.label_column):
        if column not in features:
            raise TrainingError(f"{where}: no column {column!r} (it has: {', '.join(features)})")
    label, image = features[config.label_column], features[config.image_column]
    if not isinstance(label, datasets.ClassLabel):
        raise TrainingError(f"{where}: column {config.label_column!r} must be a ClassLabel, got {label!r}")
    if not isinstance(image, datasets.Image):
        raise TrainingError(f"{where}: column {config.image_column!r} must be an Image, got {image!r}")
    if len(dataset) == 0:
        raise TrainingError(f"{source}: split {split!r} has no rows")
    try:
        check_split(dataset, split, SplitColumns(config.image_column, config.label_column, len(label.names)), source)
    except DatasetRowsError as err:
        raise TrainingError(str(err)) from None
    return list(label.names)


def keep_min_scores(dataset: datasets.Dataset, min_scores: dict[str, float], source: str) -> datasets.Dataset:
    """Rows whose every named score is at least its threshold (a missing score column is an error)."""
    missing = [column for column in min_scores if column not in dataset.column_names]
    if missing:
        raise TrainingError(
            f"{source}: cannot filter on {', '.join(map(repr, missing))}: no such column "
            f"(it has: {', '.join(dataset.column_names)}); build the dataset with scoring enabled"
        )
    if not min_scores:
        return dataset
    return dataset.filter(
        _passes,
        fn_kwargs={"min_scores": min_scores},
        input_columns=list(min_scores),
        batched=False,
        desc="filtering on scores",
    )


def _passes(*values, min_scores: dict[str, float]) -> bool:
    return all(value is not None and value >= threshold for value, threshold in zip(values, min_scores.values()))


def label_lookup(theirs: list[str], ours: list[str], label_map: dict[str, str], source: str) -> torch.Tensor:
    """Index map from an eval dataset's classes to ours; identical names map by themselves."""
    unknown_targets = sorted(set(label_map.values()) - set(ours))
    if unknown_targets:
        raise TrainingError(f"--label-map: {unknown_targets} are not classes of the training data ({', '.join(ours)})")
    mapped = [label_map.get(name, name) for name in theirs]
    unmapped = [name for name, target in zip(theirs, mapped) if target not in ours]
    if unmapped:
        raise TrainingError(
            f"{source}: classes {unmapped} have no counterpart among the training classes ({', '.join(ours)}); "
            "map them with --label-map THEIRS=OURS,..."
        )
    return torch.tensor([ours.index(target) for target in mapped])


def image_loader(dataset: datasets.Dataset, config: TrainConfig, transform, shuffle: bool = False) -> DataLoader:
    """Batches of ``pixel_values`` (transformed images) and ``label`` (the dataset's own label indices)."""
    columns = dataset.select_columns([config.image_column, config.label_column])
    columns = columns.cast_column(config.image_column, datasets.Image(decode=False))
    columns = columns.with_transform(partial(_to_tensors, transform, config.image_column, config.label_column))
    generator = torch.Generator().manual_seed(config.seed)
    return ImageLoader(
        columns, batch_size=config.batch_size, shuffle=shuffle, generator=generator, num_workers=config.num_workers
    )


class ImageLoader(DataLoader):
    """A DataLoader whose damaged image is the same one-line ``TrainingError`` in a worker process (``--num-workers``)
    as in this one: the DataLoader re-raises a worker's error with the worker's traceback in its message."""

    def __iter__(self):
        try:
            yield from super().__iter__()
        except TrainingError as err:
            raise TrainingError(str(err).rstrip().rsplit("TrainingError: ", 1)[-1]) from None


def _to_tensors(transform, image_column: str, label_column: str, batch: dict) -> dict:
    """A batch decoded (within ``synthcore.images``' pixel bound) and transformed."""
    try:
        images = [decode_image(value).convert("RGB") for value in batch[image_column]]
    except ImageError as err:  # its header passed check_split; its data is damaged
        raise TrainingError(f"column {image_column!r}: {err}") from None
    return {"pixel_values": [transform(image) for image in images], "label": batch[label_column]}
