"""ImageFolder: ``imagefolder/<split>/<class name>/<row id>.png``, the layout of torchvision's ``ImageFolder`` (and of
the classroom exercise's ``data/train/{class}``), with a ``metadata.parquet`` per split for ``load_dataset``.

Each image is its stored bytes, never re-encoded (a WebP or JPEG build keeps its own extension). The metadata holds
``file_name`` and every other column, so ``load_dataset("imagefolder", data_dir=...)`` gives the rows with their
scores, the labels a ClassLabel in our order. It is Parquet, not JSON Lines: datasets infers a JSON file's types
from its first rows, so a column all null in one split (``resnet50_match`` where no class has ImageNet names)
gets another type there and the splits refuse to load together; Parquet keeps the types (and writes a million rows
in a second). ``README.md`` declares the features too, for ``load_dataset`` on the folder and ``python -m training
--dataset``. torchvision's ``ImageFolder`` numbers the class folders in sorted order instead, which can differ from
ours: ``classes.json`` gives both.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from builders.formats.base import ExportFormat, FormatOptions, Progress, Written, write_folder_card
from builders.formats.source import SourceData, SourceFile, image_extensions, read_batches
from synthcore.columns import ID, IMAGE, LABEL
from synthcore.layout import MAX_FILES_PER_FOLDER
from synthcore.parallel import IO_THREADS, ordered_map

METADATA = "metadata.parquet"
FILE_NAME = "file_name"
# rows of a row group of the metadata: a writer keeps every row group's statistics until it closes (a million rows
# in groups of a source file's 256 held 100 MiB of them), and holds one group (16,384 rows: ~30 MiB, at any size)
METADATA_ROWS = 16_384
CLASSES = "classes.json"
WRITE_THREADS = 2 * IO_THREADS  # creating a file mostly waits on the file system, the GIL released


CARD_BODY = (
    "# ImageFolder export\n\n"
    "`<split>/<class name>/<row id>.png`, the stored image bytes, and `<split>/metadata.parquet` with every other "
    "column. `label` counts classes in the dataset's own order; torchvision's `ImageFolder` numbers the class "
    f"folders in sorted order instead: `{CLASSES}` gives both (`imagefolder_to_label[split][i]` is the label of "
    "ImageFolder's class `i`).\n"
)


class ImageFolder(ExportFormat):
    name = "imagefolder"
    folder = "imagefolder"
    card_text = (
        "`imagefolder/<split>/<class name>/<row id>.png` with `<split>/metadata.parquet` (every other column): "
        'torchvision\'s `ImageFolder("imagefolder/train")` reads it, and so does `load_dataset` on the folder. '
        "**ImageFolder numbers the classes in sorted folder order, not in the `label` order above**: "
        "`imagefolder/classes.json` gives both."
    )

    def hub_problems(self, folder: Path) -> list[str]:
        """The Hub takes at most ``MAX_FILES_PER_FOLDER`` files in one folder; a class of a split may hold more."""
        crowded = [
            f"{split.name}/{entry.name}"
            for split in folder.iterdir()
            if split.is_dir()
            for entry in os.scandir(split)
            if entry.is_dir() and sum(1 for _ in os.scandir(entry.path)) > MAX_FILES_PER_FOLDER
        ]
        return [
            f"{self.folder}/{name}: more than {MAX_FILES_PER_FOLDER:,} files, the most the Hub takes in one folder; "
            "push the webdataset format instead (hub.formats: [webdataset])"
            for name in crowded
        ]

    def write(self, source: SourceData, folder: Path, options: FormatOptions, progress: Progress) -> Written:
        written = Written()
        done = {entry["file"] for entry in progress.done}
        present: dict[str, set[int]] = {}
        schema = metadata_features(source.features).arrow_schema
        for split, files in source.files.items():
            (folder / split).mkdir(parents=True, exist_ok=True)
            present[split], pending = set(), []
            with (
                _Images(folder / split, source.class_names) as images,
                pq.ParquetWriter(folder / split / METADATA, schema) as metadata,
            ):  # rewritten whole every run
                export = partial(_export_file, source, images, done=done)
                for file, table, labels in ordered_map(export, files, threads=WRITE_THREADS):
                    pending.append(table.cast(schema))
                    if sum(part.num_rows for part in pending) >= METADATA_ROWS or file is files[-1]:
                        metadata.write_table(pa.concat_tables(pending))
                        pending = []
                    present[split] |= labels
                    if _key(file) not in done:
                        progress.record({"file": _key(file)})
            written.rows[split] = written.files[split] = source.rows_of(split)
        _write_classes(folder, source.class_names, present)
        write_folder_card(folder, source.features, written.rows, CARD_BODY)
        return written


def metadata_features(features: datasets.Features) -> datasets.Features:
    """The rows' features with ``file_name`` in place of the image: what ``metadata.parquet`` holds (its schema
    keeps the ClassLabels, and a column that is all null in one split has its type all the same)."""
    return datasets.Features(
        {
            (FILE_NAME if name == IMAGE else name): (datasets.Value("string") if name == IMAGE else feature)
            for name, feature in features.items()
        }
    )


def _key(file: SourceFile) -> str:
    return f"{file.split}/{file.path.name}"


def _export_file(
    source: SourceData, images: _Images, file: SourceFile, *, done: set[str]
) -> tuple[SourceFile, pa.Table, set[int]]:
    """One source file: its images into their class folders (unless an earlier run finished them), and its rows
    with the images' file names in place of their bytes. Returns the file, those rows and the labels met."""
    parts, labels = [], set()
    for batch in read_batches(file, list(source.features)):
        table = pa.Table.from_batches([batch])
        data = table.column(IMAGE).combine_chunks().field("bytes")
        names = _file_names(images.class_names, table, data, file.first_row + sum(p.num_rows for p in parts))
        met = set(pc.unique(table.column(LABEL)).to_pylist())
        if _key(file) not in done:
            images.write(names.to_pylist(), data.to_pylist(), [source.class_names[label] for label in met])
        labels |= met
        parts.append(table.set_column(table.schema.get_field_index(IMAGE), FILE_NAME, names))
    return file, pa.concat_tables(parts), labels


def _file_names(class_names: pa.Array, table: pa.Table, data: pa.Array, first_row: int) -> pa.Array:
    """``<class name>/<stem>.<extension>`` of each row, a column at a time. The stem is the last part of the row's
    id (``train/fox/000012`` gives ``000012``), unique within its class; the row's number in the split where the
    id gives no usable name (empty, hidden, a backslash)."""
    stems = pc.replace_substring_regex(pc.cast(table.column(ID), pa.string()), r"^.*/", "")
    unusable = pc.or_(pc.or_(pc.equal(stems, ""), pc.starts_with(stems, ".")), pc.match_substring(stems, "\\"))
    if pc.any(unusable).as_py():
        numbers = pa.array([f"{first_row + index:09d}" for index in range(len(table))], pa.string())
        stems = pc.if_else(unusable, numbers, stems)
    classes = class_names.take(table.column(LABEL))
    return pc.binary_join_element_wise(classes, "/", stems, ".", image_extensions(data), "")


class _Images:
    """The image files of one split, written through the bare system calls relative to the split's folder (Python's
    buffered file object costs twice as much a file, and a path from the root has to be looked up again each
    time); a million files are written. A class folder is made the first time one of its images comes."""

    def __init__(self, folder: Path, class_names: list[str]):
        self.folder, self.made = folder, set()
        self.class_names = pa.array(class_names, pa.string())

    def __enter__(self) -> _Images:
        self.descriptor = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.descriptor)

    def write(self, names: list[str], images: list[bytes], classes: list[str]) -> None:
        for name in classes:
            if name not in self.made:
                os.makedirs(self.folder / name, exist_ok=True)  # two threads may both make it
                self.made.add(name)
        for name, data in zip(names, images):
            self._write_file(name, data)

    def _write_file(self, name: str, data: bytes) -> None:
        descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=self.descriptor)
        try:
            view = memoryview(data)
            while view:  # a write may take fewer bytes than given
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)


def _write_classes(folder: Path, names: list[str], present: dict[str, set[int]]) -> None:
    """``classes.json``: our label order, and per split the order torchvision's ``ImageFolder`` gives the class
    folders there (sorted by name, only those with images) with the label of each."""
    imagefolder = {split: sorted(names[label] for label in labels) for split, labels in present.items()}
    record = {
        "classes": names,
        "imagefolder_classes": imagefolder,
        "imagefolder_to_label": {split: [names.index(n) for n in order] for split, order in imagefolder.items()},
    }
    (folder / CLASSES).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
