"""WebDataset: ``webdataset/<split>/<split>-NNNNNN.tar`` shards, the format img2dataset writes and large training
loops stream. Each sample is ``<key>.png`` (the stored bytes; a WebP or JPEG build keeps its extension),
``<key>.cls`` (the label, in our ClassLabel order: ``classes.json`` names them) and ``<key>.json`` (every other
column). The key is the row's number in its split. A shard holds ``max_samples`` samples, fewer when
``max_bytes`` would be passed (a sample larger than ``max_bytes`` gets a shard of its own).

Samples are made into tar blocks on threads, a few thousand rows at a time, and appended to the shard on the
calling thread. The tar headers are written here (POSIX ustar, as ``tarfile`` reads them): ``tarfile``'s
``TarInfo.tobuf`` costs 26 us a member, 80 s for a million samples of three members.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import BinaryIO

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from builders.formats.base import ExportFormat, FormatOptions, Progress, Written, write_folder_card
from builders.formats.jsonrows import json_rows
from builders.formats.source import SourceData, SourceFile, file_groups, image_extensions, read_batches
from synthcore.columns import IMAGE, LABEL
from synthcore.parallel import ordered_map

CLASSES = "classes.json"
BLOCK = 512


class WebDatasetOptions(FormatOptions):
    max_samples: int = Field(default=10_000, ge=1)
    max_bytes: int | None = Field(default=None, ge=BLOCK)


CARD_BODY = (
    "# WebDataset export\n\n"
    "`<split>/<split>-NNNNNN.tar`: each sample is `<key>.png` (the stored image bytes), `<key>.cls` (the label, in "
    f"the order of `{CLASSES}`) and `<key>.json` (every other column). Stream it with the `webdataset` library, or "
    "read it with `load_dataset` on this folder (this README gives the types).\n"
)


class WebDataset(ExportFormat):
    name = "webdataset"
    folder = "webdataset"
    Options = WebDatasetOptions
    card_text = (
        "`webdataset/<split>/<split>-NNNNNN.tar`: WebDataset shards; each sample is `<key>.png`, `<key>.cls` (the "
        "`label` above, names in `webdataset/classes.json`) and `<key>.json` (the other columns)."
    )

    def write(self, source: SourceData, folder: Path, options: FormatOptions, progress: Progress) -> Written:
        assert isinstance(options, WebDatasetOptions)
        written = Written()
        for split in source.files:
            written.files[split] = _write_split(source, folder, split, options, progress)
            written.rows[split] = source.rows_of(split)
        classes = {"classes": source.class_names}
        (folder / CLASSES).write_text(json.dumps(classes, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        write_folder_card(folder, sample_features(source), written.rows, CARD_BODY)
        return written


def sample_features(source: SourceData) -> datasets.Features:
    """A sample's fields as datasets' webdataset builder reads them: the image, the label, the other columns."""
    others = {name: source.features[name] for name in source.other_columns if name != LABEL}
    image = source.image_extension()
    return datasets.Features({image: datasets.Image(), "cls": source.features[LABEL], "json": others})


def _write_split(source: SourceData, folder: Path, split: str, options: WebDatasetOptions, progress: Progress) -> int:
    """The shards of ``split`` from where an earlier run stopped (none: from the start); returns their count."""
    (folder / split).mkdir(parents=True, exist_ok=True)
    shards = _Shards(folder / split, split, options, progress, [e for e in progress.done if e["split"] == split])
    for begun in sorted((folder / split).glob(f"{split}-*.tar"))[shards.index :]:  # not recorded: made again
        begun.unlink()
    width = max(9, len(str(source.rows_of(split))))
    pending = [file for file in source.files[split] if file.first_row + file.rows > shards.start]
    for samples in ordered_map(partial(_samples, source, start=shards.start, width=width), file_groups(pending)):
        shards.add(samples)
    shards.close()
    return shards.index


class _Shards:
    """The shards of one split, written in turn; a shard is recorded in ``progress`` once complete, with the
    number of the split's rows written so far, where a rerun starts."""

    def __init__(self, folder: Path, split: str, options: WebDatasetOptions, progress: Progress, done: list[dict]):
        self.folder, self.split, self.options, self.progress = folder, split, options, progress
        self.index = len(done)
        self.start = done[-1]["end"] if done else 0
        self.rows = self.start
        self.file: BinaryIO | None = None
        self.samples = self.size = 0

    def add(self, samples: list[bytes]) -> None:
        """Samples appended in order, a shard closed where the next would pass a limit (written a run at once)."""
        limit = self.options.max_bytes or float("inf")
        run: list[bytes] = []
        for sample in samples:
            full = self.samples == self.options.max_samples or self.size + len(sample) + 2 * BLOCK > limit
            if self.samples and full:
                self._write(run)
                run = []
                self.close()
            run.append(sample)
            self.samples, self.size = self.samples + 1, self.size + len(sample)
        self._write(run)

    def _write(self, run: list[bytes]) -> None:
        if self.file is None:
            self.file = open(self.folder / f"{self.split}-{self.index:06d}.tar", "wb")  # noqa: SIM115 - closed in close
        self.file.write(b"".join(run))
        self.rows += len(run)

    def close(self) -> None:
        if self.file is None:
            return
        self.file.write(bytes(2 * BLOCK))  # the end-of-archive marker
        self.file.close()
        self.file = None
        self.samples = self.size = 0
        self.progress.record({"split": self.split, "shard": self.index, "end": self.rows})
        self.index += 1


def _samples(source: SourceData, files: list[SourceFile], *, start: int, width: int) -> list[bytes]:
    """The rows of ``files`` (in a row, from the split's row ``start`` on), each as the tar blocks of its three
    members; the JSON texts encoded a column at a time (``jsonrows``)."""
    columns = [c for c in source.other_columns if c != LABEL]
    parts = [pa.Table.from_batches(list(read_batches(f, [IMAGE, LABEL, *columns]))) for f in files]
    skip = max(0, start - files[0].first_row)
    table = pa.concat_tables(parts).slice(skip)
    images = table.column(IMAGE).combine_chunks().field("bytes")
    kinds = pc.cast(pc.binary_join_element_wise(".", image_extensions(images), ""), pa.binary()).to_pylist()
    labels = pc.cast(pc.cast(table.column(LABEL), pa.string()), pa.binary()).to_pylist()
    texts = json_rows(table.select(columns))
    first = files[0].first_row + skip
    samples = []
    for row, (data, kind, label, text) in enumerate(zip(images.to_pylist(), kinds, labels, texts), first):
        key = b"%0*d" % (width, row)
        samples.append(_member(key + kind, data) + _member(key + b".cls", label) + _member(key + b".json", text))
    return samples


_MODE_UID_GID = b"0000644\0" + b"0000000\0" * 2
_MTIME = b"00000000000\0"  # mtime 0: the same bytes from the same data
_REST = b"0" + bytes(100) + b"ustar\x0000" + bytes(247)  # type (a file), link name, magic, owner names, devices
_FIXED_SUM = sum(_MODE_UID_GID) + sum(_MTIME) + sum(b" " * 8) + sum(_REST)  # the checksum counts itself as spaces


def _member(name: bytes, data: bytes) -> bytes:
    """One regular file of a ustar archive: its 512-byte header, its bytes, zeros to the next block. The name is
    a key of digits and an extension: far below the 100 bytes a name may have."""
    size = b"%011o\0" % len(data)
    checksum = b"%06o\0 " % (_FIXED_SUM + sum(name) + sum(size))
    padding = bytes(-len(data) % BLOCK)
    return b"".join((name, bytes(100 - len(name)), _MODE_UID_GID, size, _MTIME, checksum, _REST, data, padding))
