"""A build whose ``--output-dir`` is in object storage (``s3://bucket/prefix``; any fsspec URL).

Each process works in a local copy of the output (``$SYNTHDATA_CACHE/objstore/<url>/rank-<N>``) with the local
machinery unchanged (staging, verification, export), and the store is the truth that every process shares:

- a shard is put to ``.synthdata/shards/`` once committed locally, the ``.parquet`` then its ``.json`` record, each
  one whole object (one PUT, never a rename); a shard counts as done when both objects are there (one listing);
- the fingerprint guard reads the store's ``.synthdata/fingerprint.json``, and refuses a mismatch as locally;
- the main process fetches the shards other processes (other machines) made, verifies them as locally, exports
  into its local copy and puts the exported files to the store, then the owner marker naming them;
- progress and ``run.json`` are small objects in ``.synthdata/``; one build at a time is ``.synthdata/lock``,
  created only if absent (``builders.store.remote_dir``).

Processes other than the main one drop their local copy of a shard once it is in the store.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from builders.plan import Shard
from builders.store.local import DamagedShard, OutputDir, RankProgress, ShardWriter, made_shards
from builders.store.prompt_lock import PromptLockFile, read_prompt_lock
from builders.store.remote_dir import RemoteDir, remote_lock
from synthcore.outdir import WORK_DIR, OwnedDir, Owner, Tool, atomic_write_text, claimed, read_owner, write_owner
from synthcore.tiny import cache_root

SHARDS, DAMAGED, PROGRESS, CLAIMS = (f"{WORK_DIR}/{name}" for name in ("shards", "damaged", "progress", "claims"))
FINGERPRINT = f"{WORK_DIR}/fingerprint.json"
LISTING_PAGE = 1000  # objects a listing request returns (S3's page)


def local_copy(url: str, rank: int = 0) -> Path:
    """Where process ``rank`` of this machine keeps its copy of the output at ``url``."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[1])[-60:]
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:12]
    return cache_root() / "objstore" / f"{readable}-{digest}" / f"rank-{rank}"


class RemoteOutputDir(OutputDir):
    """``OutputDir`` over a local copy, with the store as the shared truth (see the module's docstring)."""

    def __init__(self, remote: RemoteDir, copy: Path, rank: int):
        super().__init__(copy)
        self.remote = remote
        self.rank = rank
        self._done: set[str] | None = None  # keys of the shards in the store, from the last listing
        self._missed = 0  # finished shards found since, one request each

    @property
    def location(self) -> str:
        return self.remote.url

    def prompt_lock(self) -> PromptLockFile:
        """The store's prompt lock: the local copy starts without the export's files (``claim``)."""
        return read_prompt_lock(self.remote)

    # -- claim -----------------------------------------------------------------------------------------------
    @contextmanager
    def claim(self, tool: Tool, keep: Callable[[], bool]) -> Iterator[OwnedDir]:
        """The store's lock, then the local copy's claim. The copy starts with no export of its own (the store's
        owner marker says what is published); a run that fails before it published anything and left nothing to
        resume from removes what it wrote to an empty prefix."""
        found_empty = not self.remote.sizes()
        with remote_lock(self.remote):
            self._forget_local_export(tool)
            if self.remote.owner() is None:
                self.remote.write_owner(Owner(tool.command, frozenset()))
            owned = None
            try:
                with claimed(self.root, tool, keep=lambda: True) as local:
                    owned = RemoteOwnedDir(local.root, tool, self.remote)
                    yield owned
            except BaseException:
                if found_empty and not (owned and owned.published) and not keep():
                    self.remote.remove([p for p in self.remote.sizes(WORK_DIR) if not p.endswith("/lock")])
                raise

    def _forget_local_export(self, tool: Tool) -> None:
        for name in tool.outputs:
            for path in self.root.glob(name):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        self.work.mkdir(parents=True, exist_ok=True)
        write_owner(self.root, Owner(tool.command, frozenset()))

    # -- fingerprint -----------------------------------------------------------------------------------------
    def fingerprint_changes(self, fingerprint: dict[str, Any]) -> list[str]:
        """Against the store's fingerprint (fetched into the local copy first; none there: none here)."""
        recorded = self.remote.read_text(FINGERPRINT)
        if recorded is None:
            self.fingerprint_file.unlink(missing_ok=True)
        else:
            self.work.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.fingerprint_file, recorded)
        return super().fingerprint_changes(fingerprint)

    def prepare(self, fingerprint: dict[str, Any], overwrite: bool) -> None:
        """As locally, in the store too; then the local copy holds exactly the store's shards."""
        if overwrite and self.fingerprint_changes(fingerprint):
            self.remote.remove([*made_shards(self.remote.sizes(SHARDS)), *made_shards(self.remote.sizes(DAMAGED))])
        self.remote.remove([*self.remote.sizes(PROGRESS), *self.remote.sizes(CLAIMS)])  # a killed run's
        super().prepare(fingerprint, overwrite)
        self.remote.upload(self.fingerprint_file, FINGERPRINT)
        self.fetch_shards()

    # -- shards ----------------------------------------------------------------------------------------------
    def remote_keys(self) -> set[str]:
        """Shards in the store: both the ``.parquet`` and its ``.json`` record there (listed once, then cached
        until this process changes the store's shards or ``done(fresh=True)`` finds the listing too far behind)."""
        if self._done is None:
            self._missed = 0
            names = {Path(p).name for p in self.remote.sizes(SHARDS)}
            self._done = {n[: -len(".parquet")] for n in names if n.endswith(".parquet") and f"{n[:-8]}.json" in names}
        return self._done

    def done(self, shard: Shard, fresh: bool = False) -> bool:
        """Without ``fresh``: in the last listing, no request (a start-up check of 10^5 pending shards asked the
        store 10^5 times). ``fresh``: exact, in the last listing or (made by another process since) its record is
        in the store now, one request. Once such requests found as many finished shards as listing again costs (a
        request per ``LISTING_PAGE`` objects), the next call lists again: a process that reaches the shards others
        finished (the end of its scan) pays about one listing for them, not a request each."""
        done = self.remote_keys()
        if shard.key in done or not fresh:
            return shard.key in done
        if self.remote.read_text(f"{SHARDS}/{shard.key}.json") is None:
            return False
        done.add(shard.key)
        self._missed += 1
        if self._missed * LISTING_PAGE >= 2 * len(done):  # two objects a shard: its .parquet and its .json
            self._done = None
        return True

    def has_shards(self) -> bool:
        self._done = None
        return bool(self.remote_keys())

    def fetch_shards(self) -> None:
        """Make the local shards those of the store: fetch what is missing here or differs in size, remove what
        the store does not have (a shard killed between its commit and its upload is made again)."""
        self._done = None
        listed = {Path(p).name: size for p, size in self.remote.sizes(SHARDS).items()}
        keys = self.remote_keys()
        wanted = {f"{key}{suffix}" for key in keys for suffix in (".parquet", ".json")}
        self.shards.mkdir(parents=True, exist_ok=True)
        for path in self.shards.iterdir():
            if path.name not in wanted:
                path.unlink()
        for name in sorted(wanted):
            local = self.shards / name
            if not local.exists() or local.stat().st_size != listed[name]:
                self.remote.download(f"{SHARDS}/{name}", local)

    def set_aside(self, shard: Shard) -> None:
        super().set_aside(shard)
        for suffix in (".parquet", ".json"):
            self.remote.move(f"{SHARDS}/{shard.key}{suffix}", f"{DAMAGED}/{shard.key}{suffix}")
        self._done = None

    def verify(self, shards: list[Shard]) -> list[DamagedShard]:
        self.fetch_shards()  # what the other processes made since the start
        return super().verify(shards)

    def open_shard(self, shard: Shard, features) -> ShardWriter:
        self.shards.mkdir(parents=True, exist_ok=True)  # in the copy of a process other than the main one
        return RemoteShardWriter(self, shard, features)

    # -- progress and report ---------------------------------------------------------------------------------
    def report_progress(self, rank: int, progress: RankProgress) -> None:
        self.remote.write_text(f"{PROGRESS}/rank-{rank}.json", json.dumps(asdict(progress)))

    def progress_of(self, processes: int) -> list[RankProgress]:
        texts = [self.remote.read_text(f"{PROGRESS}/rank-{rank}.json") for rank in range(processes)]
        return [RankProgress.from_json(text) if text else RankProgress() for text in texts]

    def claim_files(self, rank: int) -> RemoteClaimFiles:
        """Claims in the store, so processes on machines that share no file system see each other's."""
        return RemoteClaimFiles(self.remote)

    def write_run_report(self, report: dict) -> None:
        super().write_run_report(report)
        self.remote.upload(self.run_report_file, f"{WORK_DIR}/{self.run_report_file.name}")


class RemoteClaimFiles:
    """Claim files (``builders.store.claims``) as objects in the store: created only if absent, rewritten by one PUT.
    Where the store cannot create only-if-absent, two processes may both take a shard at the same moment: both make
    it, with the same bytes, and the second PUT replaces the first (work lost, nothing wrong)."""

    def __init__(self, remote: RemoteDir):
        self.remote = remote

    def read(self, name: str) -> str | None:
        return self.remote.read_text(f"{CLAIMS}/{name}")

    def create(self, name: str, text: str) -> bool:
        created = self.remote.create_exclusive(f"{CLAIMS}/{name}", text)
        if created is None:
            self.remote.write_text(f"{CLAIMS}/{name}", text)
        return created is not False

    def replace(self, name: str, text: str) -> None:
        self.remote.write_text(f"{CLAIMS}/{name}", text)


class RemoteShardWriter(ShardWriter):
    """Commits locally, then puts the shard and its record to the store (in that order: a shard counts as done
    once its record is there)."""

    store: RemoteOutputDir

    def commit(self) -> None:
        super().commit()
        for path in (self.final, self.final.with_suffix(".json")):
            self.store.remote.upload(path, f"{SHARDS}/{path.name}")
        if self.store.rank != 0:  # the main process fetches it for the export; this copy is not needed again
            for path in (self.final, self.final.with_suffix(".json")):
                path.unlink()
        if self.store._done is not None:
            self.store._done.add(self.shard.key)


class RemoteOwnedDir(OwnedDir):
    """Publishes into the local copy, then into the store: the owner marker first lists old and new files (a run
    killed half-way leaves every file there recorded as ours), then every file is put, whole, the files of the
    last export that are not in this one are deleted, and the marker is written as it now is."""

    def __init__(self, root: Path, tool: Tool, remote: RemoteDir):
        super().__init__(root, tool)
        self.remote = remote

    def publish(self, stage: Path, names=None) -> None:
        super().publish(stage, names)
        local = read_owner(self.root)
        before = self.remote.owner() or Owner(self.tool.command, frozenset())
        replaced = {top for f in local.files if (top := f.split("/")[0])}
        if names is None:
            replaced |= {top for f in before.files if self.tool.writes(top := f.split("/")[0])}
        kept = {f for f in before.files if f.split("/")[0] not in replaced}
        self.remote.write_owner(Owner(self.tool.command, frozenset({*before.files, *local.files})))
        for relative in sorted(local.files):
            self.remote.upload(self.root / relative, relative)
        self.remote.remove(sorted(before.files - local.files - kept))
        self.remote.write_owner(Owner(self.tool.command, frozenset({*kept, *local.files})))
