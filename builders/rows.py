"""The row of a generated image, declared once: its fields are the dataset's first columns, in order, and each
field carries its ``datasets`` feature, so the features and the rows written cannot drift apart. The scorers'
columns follow them (``eval.scorers``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import datasets
import numpy as np


def _column(feature: Callable[[list[str]], Any]):
    """A field whose ``datasets`` feature is ``feature(class_names)``."""
    return field(metadata={"feature": feature})


@dataclass(frozen=True)
class GeneratedRow:
    id: str = _column(lambda names: datasets.Value("string"))
    image: np.ndarray = _column(lambda names: datasets.Image())  # uint8 (H, W, 3) until encoded
    label: int = _column(lambda names: datasets.ClassLabel(names=names))
    prompt: str = _column(lambda names: datasets.Value("string"))
    negative_prompt: str = _column(lambda names: datasets.Value("string"))
    seed: int = _column(lambda names: datasets.Value("int64"))
    guidance_scale: float = _column(lambda names: datasets.Value("float32"))
    safety_regenerations: int | None = _column(lambda names: datasets.Value("int32"))  # None: checker off
    filter_regenerations: int | None = _column(lambda names: datasets.Value("int32"))  # None: filters.on_fail drop

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def row_features(class_names: list[str], guided: bool = False) -> dict:
    """The features of ``GeneratedRow``'s columns, in order; then, for a recipe with reference images, those of
    ``REFERENCE_FEATURES`` (a recipe without any keeps exactly its columns)."""
    return {f.name: f.metadata["feature"](class_names) for f in fields(GeneratedRow)} | (
        REFERENCE_FEATURES if guided else {}
    )


# Real-image guidance (docs/guidance.md): the reference file a row started from, its SHA-256, and CLIP's cosine
# similarity of the image to it (null where the class has no references, or the CLIP scorer is off).
REFERENCE_FEATURES = {
    "reference_image": datasets.Value("string"),
    "reference_sha256": datasets.Value("string"),
    "reference_similarity": datasets.Value("float32"),
}


@dataclass
class BatchRows:
    """The rows of one batch (dicts: a ``GeneratedRow`` plus its score columns), and the ids of the jobs the
    safety checker made us drop."""

    rows: list[dict]
    dropped: list[str]
