"""SHA-256 of stored images' bytes: how a dataset of real images is checked against the reference photos a
synthetic dataset was made from (real-image guidance; each row records its photo's ``reference_sha256``). A real
image that steered the training images cannot also measure them: evaluating on it measures memory."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

import datasets

REFERENCE_SHA256 = "reference_sha256"  # the column of a guided dataset's rows (builders.rows)
BATCH = 256


def reference_hashes(splits: Iterable[datasets.Dataset]) -> set[str]:
    """The reference photos' hashes a dataset's rows record (empty for a dataset made without references)."""
    return {
        digest
        for split in splits
        if REFERENCE_SHA256 in split.column_names
        for digest in split[REFERENCE_SHA256]
        if digest is not None
    }


def shared_images(hashes: Collection[str], dataset: datasets.Dataset, image_column: str) -> list[int]:
    """The rows of ``dataset`` whose image file has one of ``hashes`` (its bytes, undecoded), in row order."""
    return [row for row, digest in image_hashes(dataset, image_column) if digest in hashes] if hashes else []


def image_hashes(dataset: datasets.Dataset, image_column: str) -> Iterator[tuple[int, str | None]]:
    """Each row's index and its image file's SHA-256, read in batches, no image decoded."""
    raw = dataset.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
    for start in range(0, len(raw), BATCH):
        for i, value in enumerate(raw[start : start + BATCH][image_column]):
            yield start + i, image_sha256(value) if value else None


def image_sha256(value: dict) -> str | None:
    """The SHA-256 of a stored image's file (``datasets.Image(decode=False)``'s value: bytes or a path)."""
    data = value.get("bytes")
    if data is None and value.get("path"):
        data = Path(value["path"]).read_bytes()
    return None if data is None else hashlib.sha256(data).hexdigest()
