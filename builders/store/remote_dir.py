"""Output directories in object storage (``s3://bucket/prefix``, ``gs://…``, any fsspec URL), for clusters without
a shared file system.

An object store has no rename, no hard link and no lock file; what it has is a PUT that makes a whole object at
once (a multipart upload appears only when it completes) and, on S3, a PUT that succeeds only if the object is
absent (``If-None-Match: *``). So every file is written once, whole, under its final name, never renamed; the one
build at a time is an object created only-if-absent. The same rules as on local disk (``synthcore.outdir``) hold:
a prefix is used only when it is empty or marked by the same command (``.synthdata/owner.json``), and a file there
that we did not write is never replaced.

Credentials and endpoints come from the store's own configuration (for S3: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``~/.aws``; fsspec's ``FSSPEC_S3_*`` variables), as for any
fsspec or ``datasets`` user.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from synthcore.outdir import (
    LOCK_FILE,
    OWNER_FILE,
    WORK_DIR,
    OutputDirError,
    Owner,
    Tool,
    busy_message,
    check_ownership,
    foreign_message,
    owner_json,
    parse_owner,
    replacing,
)

log = logging.getLogger("synthdata")

T = TypeVar("T")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(path: str | Path | None) -> bool:
    """Whether ``path`` names a place in a store reached through fsspec (``s3://``, ``gs://``…), not a local path."""
    return isinstance(path, str) and bool(_URL.match(path)) and not path.startswith("file://")


def no_push_from_store(url: str) -> str:
    """Why a build into a store does not push (yet), and what to do instead."""
    return (
        f"--output-dir {url}: pushing to the Hub from object storage is not supported yet. Build there without "
        "--push-to-hub (and without hub.repo_id), copy the prefix to a local directory, and push it with "
        "`python build.py DIR --push-only --push-to-hub USER/NAME`."
    )


# Object stores a build can write to (fsspec's names); read-only or wrapping protocols (http, zip, github…) are not.
STORE_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "oci", "hdfs", "webhdfs", "memory")


class StoreURLError(ValueError):
    """A store URL that cannot name an output (exit 2); the message never repeats credentials."""


def store_url(url: str) -> str:
    """``url`` in one canonical spelling, checked before any work: a store scheme, a bucket, no credentials, no
    ``.``/``..`` parts, query or fragment; repeated and trailing slashes dropped (``s3://b//p/`` is ``s3://b/p``:
    spelled twice, one prefix would be written twice under two names)."""
    scheme, _, rest = url.partition("://")
    bucket, _, path = rest.partition("/")
    if "@" in bucket:  # user:password@: say so without repeating them
        shown = f"{scheme}://***@{bucket.rsplit('@', 1)[1]}/{path.split('?')[0].split('#')[0]}"
        raise StoreURLError(
            f"{shown}: the URL holds credentials; give them through the store's own configuration "
            "(for S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or ~/.aws), never in the URL"
        )
    shown = url.split("?")[0].split("#")[0]  # a query may carry a signature: never repeated either
    if scheme.lower() not in STORE_SCHEMES:
        known = ", ".join(STORE_SCHEMES)
        raise StoreURLError(f"{shown}: {scheme}:// is not an object store to build into (one of: {known})")
    parts = [part for part in path.split("/") if part]
    plain = rest.isprintable() and not any(c in rest for c in "?#\\")
    if not bucket or not plain or any(part in (".", "..") for part in parts):
        raise StoreURLError(f"{shown}: expected {scheme}://BUCKET/PREFIX (a bucket, then plain path parts)")
    normal = "/".join([f"{scheme.lower()}://{bucket}", *parts])
    if normal != url:
        log.info("store URL %s read as %s", url, normal)
    return normal


class RemoteDir:
    """A prefix in an object store, addressed by paths relative to it (``data/train-00000-of-00001.parquet``)."""

    def __init__(self, url: str):
        import fsspec

        self.url = store_url(url)
        try:
            # Other processes (machines) change the store: every listing is asked of it, never remembered.
            self.fs, self.path = fsspec.core.url_to_fs(self.url, use_listings_cache=False)
        except (ImportError, ValueError) as err:
            raise OutputDirError(
                f"cannot open {self.url}: {err}. For s3:// install the extra: pip install 'synthdata[s3]' "
                "(gs:// needs gcsfs, and so on for fsspec's other stores)."
            ) from None
        self.path = self.path.rstrip("/")

    def __str__(self) -> str:
        return self.url

    def key(self, relative: str) -> str:
        return f"{self.path}/{relative}"

    def url_of(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    # -- reading -----------------------------------------------------------------------------------------------
    def sizes(self, relative: str = "") -> dict[str, int]:
        """Every object under ``relative`` (all of the prefix by default): its path relative to the prefix, and its
        size. One listing (a few requests per thousand objects), nothing read."""
        base = self.key(relative).rstrip("/")
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        start = len(self.path) + 1
        return {name[start:]: int(info["size"]) for name, info in found.items() if info.get("type") != "directory"}

    def read_text(self, relative: str) -> str | None:
        """The object's text, or None when there is none."""
        data = self.read_bytes(relative)
        return None if data is None else data.decode("utf-8")

    def read_bytes(self, relative: str, limit: int | None = None) -> bytes | None:
        """The object's bytes (its first ``limit``), or None when there is none."""
        try:
            return self.fs.cat_file(self.key(relative), start=0 if limit else None, end=limit)
        except FileNotFoundError:
            return None

    def download(self, relative: str, target: Path) -> None:
        """The object's bytes as ``target``, replaced in one step (a partial download is never under that name)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with replacing(target) as temp:
            self.fs.get_file(self.key(relative), str(temp))

    # -- writing: every object once, whole -----------------------------------------------------------------------
    def upload(self, source: Path, relative: str) -> None:
        """``source`` as the object ``relative``: one PUT (or one multipart upload, which appears only once
        complete), so a reader sees the old object or the new one, never a part."""
        self.fs.put_file(str(source), self.key(relative))

    def write_text(self, relative: str, text: str) -> None:
        self.fs.pipe_file(self.key(relative), text.encode("utf-8"))

    def remove(self, relatives: list[str]) -> None:
        if relatives:
            with suppress(FileNotFoundError):
                self.fs.rm([self.key(r) for r in relatives])

    def move(self, relative: str, target: str) -> None:
        """Copy inside the store, then delete the original (stores have no rename)."""
        with suppress(FileNotFoundError):
            self.fs.copy(self.key(relative), self.key(target))
            self.fs.rm_file(self.key(relative))

    def create_exclusive(self, relative: str, text: str) -> bool | None:
        """Create the object only if it is absent: True when created, False when it was there; None when this
        store cannot do that in one request (then the caller checks and writes, and says so)."""
        try:
            self.fs.pipe_file(self.key(relative), text.encode("utf-8"), mode="create")
        except FileExistsError:
            return False
        except (NotImplementedError, TypeError, ValueError):
            return None
        return True

    # -- ownership -------------------------------------------------------------------------------------------
    def owner(self) -> Owner | None:
        return parse_owner(self.read_text(f"{WORK_DIR}/{OWNER_FILE}"))

    def write_owner(self, owner: Owner) -> None:
        self.write_text(f"{WORK_DIR}/{OWNER_FILE}", owner_json(owner))


def check_remote(remote: RemoteDir, tool: Tool) -> dict[str, int]:
    """What the prefix holds (paths and sizes) once ``tool`` may write there; ``OutputDirError`` otherwise, by the
    same rules as a local directory: empty, or made by ``tool`` with nothing under our names that we did not
    write. Writes nothing."""
    found = read_or_refuse(remote, lambda: _listing(remote))
    if not found:
        return found
    owner = check_ownership(remote.url, sorted({name.split("/")[0] for name in found}), remote.owner(), tool)
    foreign = sorted(name for name in found if tool.writes(name.split("/")[0]) and name not in owner.files)
    if foreign:
        raise OutputDirError(foreign_message(remote.url, foreign))
    return found


def _listing(remote: RemoteDir) -> dict[str, int]:
    bucket = remote.path.split("/")[0]
    if not remote.fs.exists(bucket):
        raise OutputDirError(
            f"{remote.url}: there is no bucket {bucket!r} (or these credentials cannot see it). Create it, check "
            "the credentials, or choose another --output-dir."
        )
    return remote.sizes()


def read_or_refuse(remote: RemoteDir, read: Callable[[], T]) -> T:
    """What ``read`` reads of the store; ``OutputDirError`` naming the store when its client fails (credentials,
    endpoint, permissions), so a store that cannot be read is a clear refusal (exit 5), never a traceback."""
    try:
        return read()
    except OutputDirError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the store's client says
        raise OutputDirError(
            f"cannot read {remote.url}: {err}. Check the store's credentials and endpoint (for S3: "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL), or choose another --output-dir."
        ) from None


@contextmanager
def remote_lock(remote: RemoteDir) -> Iterator[None]:
    """One build at a time: ``.synthdata/lock`` created only if absent (pid and host inside), deleted at the end.
    A lock left by a dead process of this host is taken over; one from another host is named in the refusal.
    Where the store cannot create only-if-absent, the lock is checked and written, which does not exclude two
    builds started at the same moment (docs/object-storage.md says so)."""
    relative = f"{WORK_DIR}/{LOCK_FILE}"
    holder = f"{os.getpid()}\n{socket.gethostname()}\n"
    created = remote.create_exclusive(relative, holder)
    if created is False and _stale(remote.read_text(relative)):
        remote.remove([relative])
        created = remote.create_exclusive(relative, holder)
    if created is None:
        log.warning("%s cannot create an object only if absent: run one build at a time there yourself", remote)
        if (text := remote.read_text(relative)) is not None and not _stale(text):
            raise OutputDirError(_busy_message(remote, text))
        remote.write_text(relative, holder)
    elif not created:
        raise OutputDirError(_busy_message(remote, remote.read_text(relative)))
    try:
        yield
    finally:
        remote.remove([relative])


def _stale(text: str | None) -> bool:
    """A lock written by a process of this host that is gone."""
    try:
        pid, host = (text or "").splitlines()[:2]
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError, OSError):
        return False
    return False


def _busy_message(remote: RemoteDir, text: str | None) -> str:
    return busy_message(remote.url, text, remote.url_of(f"{WORK_DIR}/{LOCK_FILE}"), None)
