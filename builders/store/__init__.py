"""Where the build's bytes live: one protocol, ``Store``, for a local directory (``local.OutputDir``) and a prefix
in an object store (``remote.RemoteOutputDir``: a local copy, with the store as the truth every process shares,
over ``remote_dir.RemoteDir``). The driver, the export and the dry run see only ``Store``; ``output_store`` picks
the kind from the ``--output-dir`` it is given.

Also here: the claim files that hand shards out to processes (``claims``) and the prompt lock, a file of the output
read where the output lives (``prompt_lock``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import datasets

from builders.plan import Plan, Shard
from builders.store.claims import ClaimFiles
from builders.store.local import DamagedShard, OutputDir, RankProgress, ShardWriter
from builders.store.prompt_lock import PromptLockFile
from builders.store.remote import RemoteOutputDir, local_copy
from builders.store.remote_dir import RemoteDir, check_remote, is_remote
from synthcore.outdir import OwnedDir, Tool, check


class Store(Protocol):
    """What the build asks of its output, wherever it lives."""

    root: Path  # this process's directory of it (for an object store, its local copy)
    shards: Path  # the finished shards of this process's directory (the export reads them there)

    @property
    def location(self) -> str:
        """Where the output is, as the user named it (a path or a store's URL), for messages and reports."""

    def prompt_lock(self) -> PromptLockFile: ...

    def claim(self, tool: Tool, keep: Callable[[], bool]) -> AbstractContextManager[OwnedDir]:
        """This build's hold on the output (marker, lock) until the context closes."""

    def check_fingerprint(self, fingerprint: dict[str, Any], overwrite: bool) -> None: ...

    def prepare(self, fingerprint: dict[str, Any], overwrite: bool) -> None:
        """Main process: start afresh if asked, record the fingerprint, drop a killed run's leftovers."""

    def done(self, shard: Shard, fresh: bool = False) -> bool:
        """Whether the shard is finished; ``fresh``: exact now, else as of this process's last look."""

    def has_shards(self) -> bool: ...

    def shard_path(self, shard: Shard) -> Path: ...

    def num_rows(self, shard: Shard) -> int: ...

    def open_shard(self, shard: Shard, features: datasets.Features) -> ShardWriter: ...

    def safety_dropped(self, shard: Shard) -> list[str]: ...

    def audit(self, shards: list[Shard], checksum: bool = False) -> list[DamagedShard]: ...

    def verify(self, shards: list[Shard]) -> list[DamagedShard]: ...

    def claim_files(self, rank: int) -> ClaimFiles: ...

    def report_progress(self, rank: int, progress: RankProgress) -> None: ...

    def progress_of(self, processes: int) -> list[RankProgress]: ...

    def write_run_report(self, report: dict) -> None: ...

    def export_names(self, plan: Plan) -> dict[str, str]: ...


def output_store(output_dir: str | Path, rank: int, tool: Tool) -> Store:
    """The output of ``tool`` at ``output_dir``: a local directory or a prefix in a store (``s3://…``) with this
    process's local copy, checked by the same rules (``synthcore.outdir``: ours, or empty). Writes nothing."""
    if not is_remote(output_dir):
        store = OutputDir(check(output_dir, tool))
        store.check_folders()
        return store
    remote = RemoteDir(str(output_dir))
    check_remote(remote, tool)
    return RemoteOutputDir(remote, local_copy(remote.url, rank), rank)
