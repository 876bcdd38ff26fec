"""The Hub's Parquet layout, as ``load_dataset`` and the Hub read it.

Small outputs (at most ``MAX_FILES_PER_FOLDER`` files in all) are flat, as they always were::

    data/<split>-NNNNN-of-NNNNN.parquet

Larger ones (the Hub accepts at most 10,000 files in one folder) are chunked: each split has its own folder, cut
into numbered folders of at most ``MAX_FILES_PER_FOLDER`` files::

    data/<split>/CCCCC/<split>-NNNNN-of-NNNNN.parquet

File numbers have five digits, more past 99,999 files in a split (``-123456-of-250000``), so names sort in order
and match the card's patterns (``split_patterns``) whatever the size. Every reader here (``hub_files``) reads both.

Every dataset this project writes (a build, a standalone-scored dataset, the rows the filters set aside) uses it,
written with datasets' own ``ParquetWriter`` (features stored in the schema) and sized from the footers alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_ROW_GROUP = 64
MAX_FILES_PER_FOLDER = 10_000  # the Hub's limit on the files of one folder
HUB_FILE = re.compile(r"^(?P<split>.+)-(?P<index>\d{5,})-of-(?P<count>\d{5,})\.parquet$")
CHUNK_FOLDER = re.compile(r"^\d{5,}$")


def hub_file_name(split: str, index: int, count: int) -> str:
    """``<split>-NNNNN-of-NNNNN.parquet``: five digits, or as many as ``count`` needs."""
    width = max(5, len(str(count)))
    return f"{split}-{index:0{width}d}-of-{count:0{width}d}.parquet"


@dataclass(frozen=True)
class DataLayout:
    """Where each file of each split goes under ``data/``: flat while the files number at most ``max_files`` in
    all, else chunked in folders of ``max_files`` (the parameter is for tests: the Hub's limit is the default)."""

    counts: dict[str, int]  # files per split
    max_files: int = MAX_FILES_PER_FOLDER

    @property
    def chunked(self) -> bool:
        return sum(self.counts.values()) > self.max_files

    def path(self, split: str, index: int) -> str:
        """The file's path relative to ``data/``."""
        name = hub_file_name(split, index, self.counts[split])
        return f"{split}/{index // self.max_files:05d}/{name}" if self.chunked else name


def split_patterns(split: str) -> list[str]:
    """The card's ``data_files`` patterns of a split (relative to the dataset's root): both layouts."""
    return [f"data/{split}-*", f"data/{split}/*/*.parquet"]


def hub_files(data_dir: Path) -> dict[str, list[Path]]:
    """Parquet files per split, in order, from the layout's names (flat and chunked)."""
    data_dir = Path(data_dir)
    found: dict[str, list[tuple[int, Path]]] = {}
    flat = ((path, None) for path in data_dir.glob("*.parquet"))
    chunked = ((path, path.parent.parent.name) for path in data_dir.glob("*/*/*.parquet"))
    for path, folder in [*flat, *chunked]:
        match = HUB_FILE.match(path.name)
        if match and (folder is None or (folder == match["split"] and CHUNK_FOLDER.match(path.parent.name))):
            found.setdefault(match["split"], []).append((int(match["index"]), path))
    return {split: [path for _, path in sorted(files)] for split, files in sorted(found.items())}


def write_parquet(table: pa.Table, path: Path) -> None:
    """A table of rows as a Parquet file written like a shard: datasets' writer, features in the schema."""
    from datasets.arrow_writer import ParquetWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    features = datasets.Features.from_arrow_schema(table.schema)
    writer = ParquetWriter(features=features, path=str(path), writer_batch_size=ROWS_PER_ROW_GROUP)
    writer.write_table(table)
    writer.finalize()
    writer.close()


def split_sizes(data_dir: Path, splits: list[str]) -> datasets.SplitDict:
    """Rows and bytes of each of ``splits`` that has files in ``data_dir``, in that order, from the Parquet
    footers (no data is read). A split without files (emptied by the filters) is left out."""
    split_dict = datasets.SplitDict()
    files_of = hub_files(data_dir)
    for split in [s for s in splits if s in files_of]:
        rows = size = 0
        for path in files_of[split]:  # one footer at a time: memory does not grow with the files
            metadata = pq.ParquetFile(path).metadata
            rows += metadata.num_rows
            size += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        split_dict.add(datasets.SplitInfo(name=split, num_examples=rows, num_bytes=size))
    return split_dict
