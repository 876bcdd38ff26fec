"""The formats a recipe may name: a new format is one module and one line here."""

from __future__ import annotations

from builders.formats.base import ExportFormat
from builders.formats.imagefolder import ImageFolder
from builders.formats.parquet import Parquet
from builders.formats.webdataset import WebDataset

FORMATS: dict[str, type[ExportFormat]] = {
    Parquet.name: Parquet,
    ImageFolder.name: ImageFolder,
    WebDataset.name: WebDataset,
}


def format_folders() -> tuple[str, ...]:
    """The output directory's folders the formats other than Parquet write."""
    return tuple(fmt.folder for fmt in FORMATS.values() if fmt.folder)
