"""The build's output directory: finished shards and their records, the recipe fingerprint, and the export.

Layout of ``<out>/``::

    README.md                       dataset card (configs point at data/)
    data/<split>-NNNNN-of-NNNNN.parquet  (data/<split>/CCCCC/... past 10,000 files: synthcore.layout)
    recipe.yaml, build_info.json    how it was made
    .synthdata/owner.json           marks the directory as made by build.py, lists the files it published
    .synthdata/lock                 held while a build runs (pid and host of the holder)
    .synthdata/fingerprint.json     content fingerprint the shards were made under
    .synthdata/shards/<key>.parquet finished shards, named by content key (the unit of resume)
    .synthdata/shards/<key>.json    its record: row ids, byte size, SHA-256, what the safety checker dropped
    .synthdata/damaged/             shards that failed verification, set aside (never deleted) when made again
    .synthdata/claims/<key>         which process makes a shard, until when (``builders.store.claims``)
    .synthdata/progress/rank-N.json what process N made in this run (the progress bar's and run.json's source)
    dropped/                        rows the recipe's filters dropped, a dataset of its own (when filtering)

A shard is written to a temporary name; its record is written, then the shard is renamed into place, so a file
under its final name is always a finished shard with a record. No shard is trusted because it exists:

- before a shard counts as done (resume), its size, its Parquet footer's row count and its record's ids are checked
  against the record and the plan: a stat and a footer read, independent of the image bytes, so resuming a large
  build starts in seconds; this finds truncated, half-written, foreign and swapped files;
- before export, every shard's SHA-256 is checked against its record (hashing runs at disk speed, ~1.7 GB/s a
  core, in threads), which also finds flipped bytes.

A shard that fails is set aside in ``.synthdata/damaged/``, reported by name and made again; nothing else is.
Exported files are copies (the kernel's ``copy_file_range``: copy-on-write clones where the file system can), never
hard links, so damage to an exported file is never damage to its shard.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, suppress
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from builders.plan import Plan, Shard
from builders.store.prompt_lock import PromptLockFile, read_prompt_lock
from synthcore.layout import MAX_FILES_PER_FOLDER, ROWS_PER_ROW_GROUP, DataLayout
from synthcore.outdir import WORK_DIR, OutputDirError, OwnedDir, Tool, atomic_write_text, claimed, file_sha256
from synthcore.parallel import ordered_map

log = logging.getLogger("synthdata")


@dataclass(frozen=True)
class ShardRecord:
    """What a finished shard holds, written beside it (``<key>.json``) when it is committed."""

    ids: list[str]  # its rows, in order
    safety_dropped: list[str]  # jobs of the shard the safety checker left out
    bytes: int
    sha256: str


@dataclass
class RankProgress:
    """What one process made in this run, in its progress file (rewritten after every batch it writes)."""

    images: int = 0  # images written, the unfinished shard's included
    shards: int = 0  # shards committed
    taken_over: int = 0  # of those, shards taken over from a process whose lease ran out
    loading_seconds: float = 0.0  # loading the models, before its first shard (all of the start on a slow disk)

    @classmethod
    def from_json(cls, text: str) -> RankProgress:
        data = json.loads(text)
        return cls(**{f.name: type(f.default)(data.get(f.name, f.default)) for f in fields(cls)})


def process_tag(rank: int) -> str:
    """Host, rank and pid: a name part no other process of the build (on any node) uses, for temporary files
    beside shared ones."""
    return f"{socket.gethostname()}-{rank}-{os.getpid()}"


class LocalClaimFiles:
    """Claim files in a directory: created by ``os.link`` of a private file (atomic, also on NFS), rewritten by
    ``os.replace``."""

    def __init__(self, directory: Path, tag: str):
        self.directory = directory
        self.tag = tag

    def read(self, name: str) -> str | None:
        try:
            return (self.directory / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def create(self, name: str, text: str) -> bool:
        path = self.directory / name
        temp = path.with_name(f".{name}.tmp-{self.tag}")
        temp.write_text(text, encoding="utf-8")
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)

    def replace(self, name: str, text: str) -> None:
        atomic_write_text(self.directory / name, text, self.tag)


@dataclass(frozen=True)
class DamagedShard:
    shard: Shard
    reason: str

    def __str__(self) -> str:
        return f"shard {self.shard.key} ({self.shard.split}/{self.shard.class_name}): {self.reason}"


class DamagedShards(RuntimeError):
    """Shards failed their checksum at export; they were set aside and must be made again."""

    def __init__(self, damaged: list[DamagedShard]):
        super().__init__(
            f"{len(damaged)} shard(s) failed verification and were set aside:\n"
            + "\n".join(f"  - {d}" for d in damaged)
        )
        self.damaged = damaged

    def __reduce__(self):  # rebuilt from its shards, not from its message, in another process
        return DamagedShards, (self.damaged,)


def made_shards(paths: Iterable[str]) -> list[str]:
    """Of ``paths`` (one folder's), the build's shards: each ``<key>.parquet`` with its ``<key>.json`` record beside
    it, both. A file a user placed among them has no such twin, and is never taken for one."""
    paths = set(paths)
    stems = {p[: -len(".parquet")] for p in paths if p.endswith(".parquet")}
    return sorted(name for stem in stems if f"{stem}.json" in paths for name in (f"{stem}.parquet", f"{stem}.json"))


def discard_made_shards(folder: Path) -> None:
    """Delete the shards the build made in ``folder`` (``made_shards``; plain files, never a link), keeping
    anything else, said in the log."""
    if not folder.is_dir():
        return
    files = [p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()]
    made = made_shards(files)
    for name in made:
        (folder / name).unlink()
    kept = sorted(p.name for p in folder.iterdir())
    if kept:
        log.warning("--overwrite: kept %d files in %s that the build did not make: %s", len(kept), folder, kept[:5])


class FingerprintMismatch(RuntimeError):
    """The output directory holds shards made under different settings."""


class OutputDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.work = self.root / WORK_DIR
        self.shards = self.work / "shards"
        self.progress = self.work / "progress"
        self.claims = self.work / "claims"
        self.damaged = self.work / "damaged"

    @property
    def location(self) -> str:
        """Where the output is, as the user named it (an object store: its URL, not the local copy)."""
        return str(self.root)

    def prompt_lock(self) -> PromptLockFile:
        """The output's prompt lock (``builders.store.prompt_lock``), where the output lives."""
        return read_prompt_lock(self.root)

    def claim(self, tool: Tool, keep: Callable[[], bool]) -> AbstractContextManager[OwnedDir]:
        """This build's hold on the directory until the context closes (``synthcore.outdir.claimed``)."""
        return claimed(self.root, tool, keep=keep)

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

    def check_folders(self) -> None:
        """The build's folders in ``.synthdata`` are folders or absent: a file or a link in their place (which would
        lead the build's writes and deletions elsewhere) is an ``OutputDirError`` naming it, before any work."""
        for path in (self.work, self.shards, self.progress, self.claims, self.damaged):
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                what = "a symbolic link" if path.is_symlink() else "a file"
                raise OutputDirError(
                    f"{path} is {what}, not the folder the build keeps its {path.name} in (it never makes one there); "
                    "move it away and run the same command again"
                )

    def prepare(self, fingerprint: dict[str, Any], overwrite: bool) -> None:
        """Main process only: start afresh if asked (deleting only the shards the build made: a user's file among
        them is kept), record the fingerprint, drop leftovers of killed writers."""
        if overwrite and self.fingerprint_changes(fingerprint):
            for made in (self.shards, self.damaged):
                discard_made_shards(made)
        self.shards.mkdir(parents=True, exist_ok=True)
        for per_run in (self.progress, self.claims):  # one build at a time: these are a finished or killed run's
            shutil.rmtree(per_run, ignore_errors=True)
            per_run.mkdir(parents=True)
        for partial in [*self.shards.glob("*.parquet.tmp-*"), *self.shards.glob(".*.json.tmp-*")]:
            partial.unlink()
        atomic_write_text(self.fingerprint_file, json.dumps(fingerprint, indent=2, ensure_ascii=False))

    # -- shards ----------------------------------------------------------------------------------------------
    def shard_path(self, shard: Shard) -> Path:
        return self.shards / f"{shard.key}.parquet"

    def done(self, shard: Shard, fresh: bool = False) -> bool:
        """Whether the shard is finished (after ``audit`` set aside those that fail their checks). ``fresh``: exact
        now, also for a shard another process finished since this one last looked; without it the answer may be
        as old as this process's last look (an object store answers from its last listing, no request), which is
        enough at start-up, before any process makes a shard, and to skip shards before a claim. A directory's
        answer is always exact."""
        return self.shard_path(shard).exists()

    def has_shards(self) -> bool:
        return self.shards.is_dir() and any(self.shards.glob("*.parquet"))

    def record(self, shard: Shard) -> ShardRecord | None:
        """The record written when the shard was committed; None when there is none (or it is unreadable)."""
        try:
            return ShardRecord(**json.loads(self.shard_path(shard).with_suffix(".json").read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def num_rows(self, shard: Shard) -> int:
        """Rows of a finished shard (fewer than planned where the safety checker dropped some)."""
        return len(self.record(shard).ids)

    def safety_dropped(self, shard: Shard) -> list[str]:
        record = self.record(shard) if self.done(shard, fresh=True) else None
        return record.safety_dropped if record else []

    def open_shard(self, shard: Shard, features: datasets.Features) -> ShardWriter:
        return ShardWriter(self, shard, features)

    # -- verification ----------------------------------------------------------------------------------------
    def problem(self, shard: Shard, checksum: bool) -> str | None:
        """Why a finished shard cannot be trusted, or None. Always: its record, the plan's ids, its size and its
        footer's row count; with ``checksum``, the SHA-256 of every byte."""
        record, path = self.record(shard), self.shard_path(shard)
        if record is None:
            return "no record of its checksum (its .json is missing or unreadable)"
        dropped, planned = set(record.safety_dropped), shard.ids
        if record.ids != [i for i in planned if i not in dropped] or not dropped <= set(planned):
            return "its record names rows of another shard (a swapped file?)"
        if (size := path.stat().st_size) != record.bytes:
            return f"{size} bytes where {record.bytes} were written (truncated or replaced)"
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception as err:  # noqa: BLE001 - whatever pyarrow says about a damaged footer
            return f"unreadable Parquet footer ({err})"
        if rows != len(record.ids):
            return f"{rows} rows where {len(record.ids)} were written"
        if checksum and file_sha256(path) != record.sha256:
            return "its bytes differ from those written (SHA-256 mismatch)"
        return None

    def verify(self, shards: list[Shard]) -> list[DamagedShard]:
        """Before export: every shard of the plan there, and every byte of it as recorded."""
        missing = [DamagedShard(shard, "its file is missing") for shard in shards if not self.done(shard, fresh=True)]
        return missing + self.audit(shards, checksum=True)

    def audit(self, shards: list[Shard], checksum: bool = False) -> list[DamagedShard]:
        """Check every finished shard of ``shards``; those that fail are set aside in ``.synthdata/damaged/``
        (so they no longer count as done) and returned."""
        finished = [shard for shard in shards if self.done(shard, fresh=True)]
        problems = list(ordered_map(lambda shard: self.problem(shard, checksum), finished))
        damaged = [DamagedShard(shard, reason) for shard, reason in zip(finished, problems) if reason]
        for bad in damaged:
            log.warning("%s: set aside in %s, it will be made again", bad, self.damaged)
            self.set_aside(bad.shard)
        return damaged

    def set_aside(self, shard: Shard) -> None:
        self.damaged.mkdir(parents=True, exist_ok=True)
        for path in (self.shard_path(shard), self.shard_path(shard).with_suffix(".json")):
            with suppress(FileNotFoundError):
                os.replace(path, self.damaged / path.name)

    # -- the last run's report -------------------------------------------------------------------------------
    @property
    def run_report_file(self) -> Path:
        return self.work / "run.json"

    def write_run_report(self, report: dict) -> None:
        """How the last run went (images found done and made, processes, shards per process, damaged shards):
        the build's report for people and tests to read, beside the shards it describes."""
        atomic_write_text(self.run_report_file, json.dumps(report, indent=2, ensure_ascii=False))

    # -- progress --------------------------------------------------------------------------------------------
    def claim_files(self, rank: int) -> LocalClaimFiles:
        """Where process ``rank`` takes its shards from (``builders.store.claims``)."""
        return LocalClaimFiles(self.claims, process_tag(rank))

    def report_progress(self, rank: int, progress: RankProgress) -> None:
        atomic_write_text(self.progress / f"rank-{rank}.json", json.dumps(asdict(progress)), process_tag(rank))

    def progress_of(self, processes: int) -> list[RankProgress]:
        """Every process's progress file, by rank (zeros for one not written yet): O(processes) per call, however
        many shards are finished."""
        found = []
        for rank in range(processes):
            try:
                found.append(RankProgress.from_json((self.progress / f"rank-{rank}.json").read_text(encoding="utf-8")))
            except (OSError, ValueError):
                found.append(RankProgress())
        return found

    # -- export ----------------------------------------------------------------------------------------------
    def export_names(self, plan: Plan, max_files: int = MAX_FILES_PER_FOLDER) -> dict[str, str]:
        """Final path under ``data/`` of every shard key, in plan order (``synthcore.layout``)."""
        layout = DataLayout({split: len(plan.shards_of(split)) for split in plan.splits}, max_files)
        return {
            shard.key: layout.path(split, i) for split in plan.splits for i, shard in enumerate(plan.shards_of(split))
        }


class ShardWriter:
    """Writes one shard with datasets' ParquetWriter under a temporary name; ``commit`` records it and renames it
    into place, ``abort`` removes the temporary file."""

    def __init__(self, store: OutputDir, shard: Shard, features: datasets.Features):
        from datasets.arrow_writer import ParquetWriter

        self.store = store
        self.shard = shard
        self.features = features
        self.final = store.shard_path(shard)
        self.temp = self.final.with_name(f"{self.final.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        self.writer = ParquetWriter(features=features, path=str(self.temp), writer_batch_size=ROWS_PER_ROW_GROUP)
        self.ids: list[str] = []
        self.safety_dropped: list[str] = []

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self.writer.write(self.features.encode_example(row))
            self.ids.append(row["id"])

    def commit(self) -> None:
        self.writer.finalize()
        self.writer.close()
        record = ShardRecord(self.ids, self.safety_dropped, self.temp.stat().st_size, file_sha256(self.temp))
        atomic_write_text(self.final.with_suffix(".json"), json.dumps(asdict(record)))
        os.replace(self.temp, self.final)

    def abort(self) -> None:
        """Drop the unfinished file: a failed or interrupted build leaves no temporary file behind."""
        with suppress(Exception):  # closing may fail the way the build did (a full disk); the file goes anyway
            self.writer.close()
        self.temp.unlink(missing_ok=True)
