"""The finished dataset every format is written from: the Parquet files of ``data/``, as ``load_dataset`` reads them.

Only ``data/`` is read: what the filters kept is in every format, and nothing else (the rows they set aside stay in
``dropped/``, or in the ``<split>_dropped`` splits of ``data/``, which are exported as splits of their own). Files
are read in batches of bounded size, so memory does not grow with a file's size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthcore.columns import ID, IMAGE, LABEL
from synthcore.layout import hub_files

BATCH_BYTES = 64 * 2**20  # of rows read at once from a data file (as stored, uncompressed)
FOOTER_TAIL = 8  # a Parquet file ends with the footer's length (4 bytes) and b"PAR1"


class NoDataError(ValueError):
    """The directory holds no dataset in our Parquet layout to export from."""


@dataclass(frozen=True)
class SourceFile:
    """One Parquet file of a split, and the index of its first row among the split's rows."""

    split: str
    path: Path
    first_row: int
    rows: int


@dataclass(frozen=True)
class SourceData:
    """The splits of a finished dataset at ``root`` (a build's output directory, or a Hub snapshot)."""

    root: Path
    files: dict[str, list[SourceFile]]

    @classmethod
    def at(cls, root: Path) -> SourceData:
        """The dataset at ``root``; ``NoDataError`` when ``root/data`` holds no file of our layout."""
        found = hub_files(Path(root) / "data")
        if not found:
            raise NoDataError(f"{root}: no dataset to export from (no data/<split>-*.parquet files): build it first")
        files: dict[str, list[SourceFile]] = {}
        for split, paths in found.items():
            first, files[split] = 0, []
            for path in paths:
                rows = pq.ParquetFile(path).metadata.num_rows
                files[split].append(SourceFile(split, path, first, rows))
                first += rows
        source = cls(Path(root), files)
        source.check_columns()
        return source

    @cached_property
    def features(self) -> datasets.Features:
        """The features datasets stored in the first file's schema (class names included)."""
        first = next(iter(self.files.values()))[0]
        return datasets.Features.from_arrow_schema(pq.read_schema(first.path))

    def check_columns(self) -> None:
        missing = [column for column in (ID, IMAGE, LABEL) if column not in self.features]
        if missing or not isinstance(self.features.get(LABEL), datasets.ClassLabel):
            raise NoDataError(
                f"{self.root}/data: the rows need columns {ID!r}, {IMAGE!r} (an Image) and {LABEL!r} (a ClassLabel); "
                f"found {', '.join(f'{name}: {feature!r}' for name, feature in self.features.items())}"
            )

    @property
    def class_names(self) -> list[str]:
        return list(self.features[LABEL].names)

    @property
    def other_columns(self) -> list[str]:
        """Every column but the image: what a format writes beside each image."""
        return [name for name in self.features if name != IMAGE]

    def image_extension(self) -> str:
        """The extension of the images' format (one build encodes them all alike), from the first image."""
        first = next(iter(self.files.values()))[0]
        batch = next(read_batches(first, [IMAGE]))
        return image_extension(batch.column(IMAGE).field("bytes")[0].as_py())

    def rows_of(self, split: str) -> int:
        return sum(f.rows for f in self.files[split])

    def identity(self, settings: dict) -> str:
        """A digest of the data (each file's name, size and Parquet footer, which holds its row groups' offsets and
        statistics) and of ``settings``: an export made under another one is of other data, and is made anew."""
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        for split, files in self.files.items():
            for file in files:
                size = file.path.stat().st_size
                digest.update(f"{split}/{file.path.name}:{size}:".encode())
                digest.update(_footer(file.path, size))
        return digest.hexdigest()


def _footer(path: Path, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(size - FOOTER_TAIL)
        length = int.from_bytes(handle.read(4), "little")
        handle.seek(max(0, size - FOOTER_TAIL - length))
        return handle.read()


def read_batches(file: SourceFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The file's rows, ``columns`` only, in batches of about ``BATCH_BYTES`` (at least a row): memory does not
    grow with a file's size, and small files are read in one batch (a batch has a fixed cost per column, and a
    row group of a shard holds few rows: reading them a row group at a time doubled the work)."""
    parquet = pq.ParquetFile(file.path)
    meta = parquet.metadata
    size = sum(meta.row_group(group).total_byte_size for group in range(meta.num_row_groups))
    rows = max(1, min(meta.num_rows, BATCH_BYTES * meta.num_rows // max(size, 1)))
    yield from parquet.iter_batches(batch_size=rows, columns=columns)


def file_groups(files: list[SourceFile], rows: int = 4096) -> Iterator[list[SourceFile]]:
    """Consecutive files of about ``rows`` rows together: work done a column at a time pays its fixed costs once
    a group, not once a small file."""
    group: list[SourceFile] = []
    for file in files:
        group.append(file)
        if sum(f.rows for f in group) >= rows:
            yield group
            group = []
    if group:
        yield group


IMAGE_EXTENSIONS = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpg", b"RIFF": "webp", b"GIF8": "gif"}


def image_extensions(images: pa.Array) -> pa.Array:
    """``image_extension`` of each of ``images`` (binary), computed once for each distinct magic number."""
    heads = pc.binary_slice(images, 0, 4)
    distinct = pc.unique(heads)
    extensions = pa.array([image_extension(head.as_py()) for head in distinct], pa.string())
    return extensions.take(pc.index_in(heads, distinct))


def image_extension(data: bytes) -> str:
    """The extension of the image's own format, read from its first bytes (the bytes are never re-encoded)."""
    for magic, extension in IMAGE_EXTENSIONS.items():
        if data.startswith(magic):
            return extension
    raise NoDataError(f"an image of an unknown format (first bytes {data[:8]!r}): only PNG, JPEG, WebP and GIF")
