"""The output directory: finished shards, the recipe fingerprint, and the exported Hub layout.

Layout of ``<out>/``::

    README.md                       dataset card (configs point at data/)
    data/<split>-NNNNN-of-NNNNN.parquet
    recipe.yaml, build_info.json    how it was made
    .synthdata/fingerprint.json     content fingerprint the shards were made under
    .synthdata/shards/<key>.parquet finished shards, named by content key (the unit of resume)
    .synthdata/shards/<key>.json    what the safety checker dropped in that shard
    dropped/                        rows the recipe's filters dropped, a dataset of its own (when filtering)

A shard is written to a temporary name and renamed into place only once complete, so a file under its final
name is always a finished shard. Exported files in ``data/`` are hard links to the shards: no image byte is
copied, and the shards stay for resume and reuse. Only a shard that filters split in two is rewritten.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from builders.plan import Plan, Shard
from synthcore.layout import ROWS_PER_ROW_GROUP, hub_file_name

WORK_DIR = ".synthdata"


class FingerprintMismatch(RuntimeError):
    """The output directory holds shards made under different settings."""


class OutputDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.work = self.root / WORK_DIR
        self.shards = self.work / "shards"
        self.progress = self.work / "progress"
        self.data = self.root / "data"
        self.dropped = self.root / "dropped"

    # -- fingerprint -----------------------------------------------------------------------------------------
    @property
    def fingerprint_file(self) -> Path:
        return self.work / "fingerprint.json"

    def fingerprint_changes(self, fingerprint: dict[str, Any]) -> list[str]:
        """What differs between the recorded fingerprint and this one (empty when none is recorded)."""
        if not self.fingerprint_file.exists():
            return []
        recorded = json.loads(self.fingerprint_file.read_text(encoding="utf-8"))
        keys = list(dict.fromkeys([*recorded, *fingerprint]))
        missing = "<absent>"
        return [
            f"{key}: {json.dumps(recorded.get(key, missing), ensure_ascii=False)} -> "
            f"{json.dumps(fingerprint.get(key, missing), ensure_ascii=False)}"
            for key in keys
            if recorded.get(key, missing) != fingerprint.get(key, missing)
        ]

    def check_fingerprint(self, fingerprint: dict[str, Any], overwrite: bool) -> None:
        changes = self.fingerprint_changes(fingerprint)
        if changes and not overwrite:
            raise FingerprintMismatch(
                f"{self.root} was built with different settings that change the images:\n"
                + "\n".join(f"  - {c}" for c in changes)
                + "\nUse another --output-dir, or pass --overwrite to discard the finished shards and start again."
            )

    def prepare(self, fingerprint: dict[str, Any], overwrite: bool) -> None:
        """Main process only: start afresh if asked, record the fingerprint, drop leftovers of killed writers."""
        if overwrite and self.fingerprint_changes(fingerprint):
            shutil.rmtree(self.work, ignore_errors=True)
        self.shards.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.progress, ignore_errors=True)
        self.progress.mkdir(parents=True)
        for partial in self.shards.glob("*.tmp*"):
            partial.unlink()
        _atomic_write_text(self.fingerprint_file, json.dumps(fingerprint, indent=2, ensure_ascii=False))

    # -- shards ----------------------------------------------------------------------------------------------
    def shard_path(self, shard: Shard) -> Path:
        return self.shards / f"{shard.key}.parquet"

    def is_done(self, shard: Shard) -> bool:
        return self.shard_path(shard).exists()

    def num_rows(self, shard: Shard) -> int:
        """Rows of a finished shard, from its footer (fewer than planned where the safety checker dropped some)."""
        return pq.ParquetFile(self.shard_path(shard)).metadata.num_rows

    def open_shard(self, shard: Shard, features: datasets.Features) -> ShardWriter:
        return ShardWriter(self, shard, features)

    def safety_dropped(self, shard: Shard) -> list[str]:
        path = self.shard_path(shard).with_suffix(".json")
        return json.loads(path.read_text(encoding="utf-8"))["safety_dropped"] if path.exists() else []

    # -- progress --------------------------------------------------------------------------------------------
    def report_progress(self, rank: int, images: int) -> None:
        _atomic_write_text(self.progress / f"rank-{rank}", str(images))

    def progress_total(self) -> int:
        total = 0
        for path in self.progress.glob("rank-*"):
            try:
                total += int(path.read_text() or 0)
            except FileNotFoundError:  # replaced while we read: the next poll counts it
                pass
        return total

    # -- export ----------------------------------------------------------------------------------------------
    def export_names(self, plan: Plan) -> dict[str, str]:
        """Final file name of every shard key, in plan order: ``data/<split>-NNNNN-of-NNNNN.parquet``."""
        names = {}
        for split in plan.splits:
            shards = plan.shards_of(split)
            for i, shard in enumerate(shards):
                names[shard.key] = hub_file_name(split, i, len(shards))
        return names

    def clear_export(self) -> None:
        for exported in (self.data, self.dropped):
            if exported.exists():
                shutil.rmtree(exported)
        self.data.mkdir(parents=True)

    def export(self, shard: Shard, name: str) -> Path:
        """Put a finished shard into ``data/`` under its final name."""
        return self.link(shard, self.data / name)

    def link(self, shard: Shard, target: Path) -> Path:
        """A finished shard as ``target``: a hard link (a copy where links fail)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.shard_path(shard), target)
        except OSError:
            shutil.copyfile(self.shard_path(shard), target)
        return target


class ShardWriter:
    """Writes one shard with datasets' ParquetWriter under a temporary name; ``commit`` renames it into place."""

    def __init__(self, store: OutputDir, shard: Shard, features: datasets.Features):
        from datasets.arrow_writer import ParquetWriter

        self.store = store
        self.shard = shard
        self.features = features
        self.final = store.shard_path(shard)
        self.temp = self.final.with_name(f"{self.final.name}.tmp-{os.getpid()}")
        self.writer = ParquetWriter(features=features, path=str(self.temp), writer_batch_size=ROWS_PER_ROW_GROUP)
        self.safety_dropped: list[str] = []

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self.writer.write(self.features.encode_example(row))

    def commit(self) -> None:
        self.writer.finalize()
        self.writer.close()
        sidecar = self.final.with_suffix(".json")
        _atomic_write_text(sidecar, json.dumps({"safety_dropped": self.safety_dropped}))
        os.replace(self.temp, self.final)


def _atomic_write_text(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # hidden: never matches a reader's pattern
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
