"""Output directories that are ours alone, for every command line (build.py, python -m eval, python -m training).

A command writes only into a directory that is absent, empty, or marked as made by that same command: the marker
``.synthdata/owner.json`` is written when a command claims the directory and names the command. It also records
every file the command published there, so a later run replaces only those: a file someone else put under one of
our names (``data/notes.txt``, a ``README.md`` that was there first) is never overwritten or deleted; the run is
refused and the message names it. Nothing is ever written through a symbolic link: a link under one of our names is
refused the same way (the link and its target are left alone). ``/``, the user's home, the synthdata checkout and
the git checkout of the current directory (and every directory above them) are refused outright.

A run writes its outputs into a staging directory beside them (``.synthdata/staging-<pid>/``, same file system) and
publishes them at the end by renaming each one into place: a directory by an atomic exchange where the kernel offers
one, so a failed or interrupted run never leaves ``data/`` emptier than it found it.

One run at a time: the claim takes ``.synthdata/lock`` (filelock's ``SoftFileLock``: an exclusive-create file that
records pid and host, which works on network file systems; a lock left by a dead process on this host is taken over
safely, one on another host is named in the message). A run that fails before it published anything leaves the
directory as it found it, so nothing blocks the retry.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import SoftFileLock, Timeout

WORK_DIR = ".synthdata"
OWNER_FILE = "owner.json"
LOCK_FILE = "lock"
CHECKOUT = Path(__file__).resolve().parents[1]


class OutputDirError(RuntimeError):
    """The output directory cannot be used; the message names it, says why and what to do."""


@dataclass(frozen=True)
class Tool:
    """A command that writes an output directory: its name (recorded in the marker, shown in messages) and the
    top-level names it writes (``fnmatch`` patterns). Anything else in the directory is never touched."""

    command: str
    outputs: tuple[str, ...]

    def writes(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.outputs)


@dataclass(frozen=True)
class Owner:
    """What the marker says: the command that made the directory and the files it published there."""

    tool: str
    files: frozenset[str]


# -- checking ------------------------------------------------------------------------------------------------------
def check(path: str | Path, tool: Tool, *, replace: bool = True) -> Path:
    """The absolute output directory, once ``tool`` may write there; raises ``OutputDirError`` otherwise. Writes
    nothing, so every process of a launch can run it alike. ``replace=False``: an earlier output of ``tool`` there
    is refused too (``--overwrite`` not given)."""
    root = Path(os.path.abspath(Path(path).expanduser())).resolve()
    if reason := protected(root):
        raise OutputDirError(
            f"{root} is {reason}: a command writes only into a directory of its own. Choose another --output-dir "
            "(a new or empty directory, e.g. outputs/NAME)."
        )
    existing = next(p for p in (root, *root.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        what = "--output-dir" if existing == root else f"a parent of {root}"
        raise OutputDirError(f"{existing} is a file, not a directory ({what}). Give --output-dir a directory path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputDirError(
            f"cannot write to {existing}: {_why_not_writable(existing)}. Choose a writable --output-dir."
        )
    if existing == root:
        _check_existing(root, tool, replace)
    return root


def protected(root: Path) -> str | None:
    """Why ``root`` may never be an output directory (None when it may): it is, or holds, the root directory, the
    user's home, the synthdata checkout or the git checkout of the current directory."""
    places = {
        Path("/"): "the root directory",
        Path.home().resolve(): "your home directory",
        CHECKOUT: "the synthdata checkout",
    }
    if git := _git_root(Path.cwd().resolve()):
        places.setdefault(git, "the git checkout of the current directory")
    for place, name in places.items():
        if root == place:
            return name
        if root in place.parents:
            return f"a directory above {name} ({place})"
    return None


def _git_root(start: Path) -> Path | None:
    return next((p for p in (start, *start.parents) if (p / ".git").exists()), None)


def _why_not_writable(path: Path) -> str:
    return "read-only file system" if os.statvfs(path).f_flag & os.ST_RDONLY else "permission denied"


def _check_existing(root: Path, tool: Tool, replace: bool) -> None:
    try:
        entries = sorted(os.listdir(root))
    except OSError as err:
        raise OutputDirError(f"cannot read {root}: {err.strerror}. Choose another --output-dir.") from None
    if not entries:
        return
    if (root / WORK_DIR).is_symlink():
        raise OutputDirError(
            f"{root / WORK_DIR} is a symbolic link: synthdata never writes through links. Choose another --output-dir."
        )
    owner = check_ownership(root, entries, read_owner(root), tool)
    foreign = [f for name in entries if tool.writes(name) for f in unrecorded(root, name, owner.files)]
    if foreign:
        raise OutputDirError(foreign_message(root, foreign))
    if not replace and any((root / f).exists() for f in owner.files):
        raise OutputDirError(
            f"{root} holds an earlier output of `{tool.command}`: pass --overwrite to replace it, or choose "
            "another --output-dir."
        )


def check_ownership(where: Path | str, entries: list[str], owner: Owner | None, tool: Tool) -> Owner:
    """The marker of a place that is not empty (``entries``: its top-level names), once it says ``tool`` made the
    place; ``OutputDirError`` otherwise. The same rule for a local directory and a prefix in a store."""
    if owner is None:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise OutputDirError(
            f"{where} is not empty ({shown}) and was not made by synthdata (no {WORK_DIR}/{OWNER_FILE}). synthdata "
            "writes only into a new or empty directory, or one it made; --overwrite replaces only what synthdata "
            "wrote. Choose another --output-dir."
        )
    if owner.tool != tool.command:
        raise OutputDirError(
            f"{where} holds the output of `{owner.tool}`, not of `{tool.command}`: choose another --output-dir."
        )
    return owner


def unrecorded(root: Path, relative: str, recorded: Collection[str]) -> list[str]:
    """Everything under ``root/relative`` (not following links) that was not published by us: files missing from
    ``recorded``, and every symbolic link (we never make one)."""
    path = root / relative
    if path.is_symlink():
        return [f"{relative} (a symbolic link to {os.readlink(path)})"]
    if relative in recorded:  # a file, or a folder published whole
        return []
    if path.is_dir():
        return [
            found for child in sorted(os.listdir(path)) for found in unrecorded(root, f"{relative}/{child}", recorded)
        ]
    return [] if relative in recorded or not os.path.lexists(path) else [relative]


def foreign_message(root: Path | str, foreign: list[str]) -> str:
    shown = "\n".join(f"  - {f}" for f in foreign[:10]) + (
        f"\n  ... and {len(foreign) - 10} more" if len(foreign) > 10 else ""
    )
    return (
        f"{root} holds files synthdata did not write, where it would write its own:\n{shown}\n"
        "synthdata never replaces or deletes a file it did not write, nor writes through a link. Move them out of "
        "the directory (or choose another --output-dir) and run the same command again."
    )


def read_owner(root: Path) -> Owner | None:
    """The marker of ``root``, or None when there is none (or it is not ours to read)."""
    try:
        return parse_owner((root / WORK_DIR / OWNER_FILE).read_text(encoding="utf-8"))
    except OSError:
        return None


def write_owner(root: Path, owner: Owner) -> None:
    atomic_write_text(root / WORK_DIR / OWNER_FILE, owner_json(owner))


def parse_owner(text: str | None) -> Owner | None:
    """A marker's text as an ``Owner``; None when there is none or it is not one."""
    try:
        data = json.loads(text) if text is not None else None
        return Owner(tool=str(data["tool"]), files=frozenset(map(str, data["files"]))) if data else None
    except (ValueError, KeyError, TypeError):
        return None


def owner_json(owner: Owner) -> str:
    return json.dumps({"tool": owner.tool, "files": sorted(owner.files)}, indent=1, ensure_ascii=False)


# -- claiming, staging, publishing -------------------------------------------------------------------------------
class OwnedDir:
    """An output directory this process holds the lock of: stage outputs, then publish them."""

    def __init__(self, root: Path, tool: Tool):
        self.root = root
        self.tool = tool
        self.work = root / WORK_DIR
        self.published = False

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory beside the outputs to write the next ones into; removed on exit (after a publish it
        holds what was replaced)."""
        stage = self.work / f"staging-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def publish(self, stage: Path, names: Collection[str] | None = None, whole: bool = False) -> None:
        """Move the staged outputs into place; ``names``: only these of them (default: all, and outputs of the last
        publish that are not staged again are removed). Refused, before anything moves, when a path to replace
        holds something we did not publish. ``whole``: each folder is recorded as one entry, not file by file (an
        export of a million images)."""
        owner = read_owner(self.root) or Owner(self.tool.command, frozenset())
        new = sorted(name for name in os.listdir(stage) if names is None or name in names)
        last = {top for f in owner.files if self.tool.writes(top := f.split("/")[0])}  # never beyond our names
        gone = set() if names is not None else last - set(new)
        foreign = [f for name in sorted({*new, *gone}) for f in unrecorded(self.root, name, owner.files)]
        if foreign:
            raise OutputDirError(foreign_message(self.root, foreign))
        files = set(new) if whole else {f for name in new for f in _files_under(stage, name)}
        kept = {f for f in owner.files if f.split("/")[0] not in {*new, *gone}}
        # Recorded before anything moves: a run killed half-way leaves every file there recorded as ours.
        write_owner(self.root, Owner(self.tool.command, frozenset({*owner.files, *files})))
        trash = stage / ".replaced"
        trash.mkdir()
        for name in new:
            _put(stage / name, self.root / name, trash)
        for name in gone:
            if os.path.lexists(self.root / name):
                os.rename(self.root / name, trash / name)
        write_owner(self.root, Owner(self.tool.command, frozenset({*kept, *files})))
        self.published = True

    def withdraw(self, name: str) -> None:
        """Remove ``name``, an output we published (refused when it holds anything else): it describes data since
        replaced. Moved aside first, so a run killed half-way leaves it whole or gone."""
        owner = read_owner(self.root) or Owner(self.tool.command, frozenset())
        if foreign := unrecorded(self.root, name, owner.files):
            raise OutputDirError(foreign_message(self.root, foreign))
        trash = self.work / f"staging-withdrawn-{os.getpid()}"
        trash.mkdir(exist_ok=True)
        os.rename(self.root / name, trash / name)
        kept = frozenset(f for f in owner.files if f.split("/")[0] != name)
        write_owner(self.root, Owner(owner.tool, kept))
        shutil.rmtree(trash, ignore_errors=True)

    def tidy(self) -> None:
        """Remove what killed runs left: staging directories (under the lock, no run of ours is using them)."""
        for leftover in self.work.glob("staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def claimed(
    path: str | Path, tool: Tool, *, replace: bool = True, keep: Callable[[], bool] = lambda: False
) -> Iterator[OwnedDir]:
    """The output directory, checked, created if absent, marked as ``tool``'s and locked for this run.

    When the run fails before it published anything, the directory is left as it was found (created directories
    removed again) unless ``keep()`` says the run left something to resume from.
    """
    root = check(path, tool, replace=replace)
    found_empty = not root.exists() or not any(root.iterdir())
    created = [p for p in (root, *root.parents) if not p.exists()]
    (root / WORK_DIR).mkdir(parents=True, exist_ok=True)
    lock = SoftFileLock(root / WORK_DIR / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputDirError(_busy_message(root)) from None
    owned = OwnedDir(root, tool)
    try:
        if read_owner(root) is None:
            write_owner(root, Owner(tool.command, frozenset()))
        owned.tidy()
        yield owned
    except BaseException:
        owned.tidy()
        if found_empty and not owned.published and not keep():
            shutil.rmtree(owned.work, ignore_errors=True)
            for directory in created:  # innermost first; stops at the first one something else is in
                with suppress(OSError):
                    directory.rmdir()
        raise
    finally:
        lock.release()


def _busy_message(root: Path) -> str:
    lock = root / WORK_DIR / LOCK_FILE
    try:
        text, since = lock.read_text(encoding="utf-8"), lock.stat().st_mtime
    except OSError:
        text, since = None, None
    return busy_message(root, text, lock, since, " (on another machine, say),")


def busy_message(where: Path | str, lock_text: str | None, lock: Path | str, since: float | None, gone=",") -> str:
    """Why ``where`` cannot be claimed now: its lock (``lock_text``: pid and host) is held; delete ``lock`` if the
    holder is gone. The same message for a local directory and a prefix in a store."""
    try:
        pid, host = (lock_text or "").splitlines()[:2]
        holder = f"process {pid} on host {host}" + (f", since {time.ctime(since)}" if since is not None else "")
    except ValueError:
        holder = "another process"
    return (
        f"{where} is in use by another synthdata run ({holder}). Wait for it to finish, or choose another "
        f"--output-dir. If that process is gone{gone} delete {lock} and run again."
    )


def _files_under(root: Path, name: str) -> list[str]:
    path = root / name
    if not path.is_dir():
        return [name]
    return [f"{name}/{inner}" for child in sorted(os.listdir(path)) for inner in _files_under(path, child)]


def _put(source: Path, target: Path, trash: Path) -> None:
    """``source`` in place of ``target``: one atomic exchange for a directory where the kernel offers it (the old
    one lands at ``source``), else the old moved to ``trash`` first; a file by one atomic replace."""
    old_dir = target.is_dir() and not target.is_symlink()
    if old_dir and source.is_dir() and _exchange(source, target):
        return
    if old_dir:
        os.rename(target, trash / target.name)
    os.replace(source, target)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_LIBC = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system or the file system
    has no such call."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if (err := ctypes.get_errno()) in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


# -- files ---------------------------------------------------------------------------------------------------------
def atomic_write_text(path: Path, text: str, tag: str | None = None) -> None:
    """``path`` replaced in one step (never half-written, never written through a link); no temporary file is
    left behind when the write fails. ``tag`` names the temporary file where processes of several hosts write
    beside each other (they can share a pid, never a tag)."""
    with replacing(path, tag) as temp:
        temp.write_text(text, encoding="utf-8")


@contextmanager
def replacing(path: Path, tag: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` to write into; on success it replaces ``path`` in one step, and it is gone
    either way. Hidden (``.name.tmp-tag``): it never matches a reader's pattern."""
    temp = path.with_name(f".{path.name}.tmp-{tag or os.getpid()}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def copy_file(source: Path, target: Path) -> None:
    """``source``'s bytes as the new file ``target``, never a hard link (damage to one is never damage to the
    other): ``os.copy_file_range`` lets the kernel copy, sharing blocks copy-on-write where the file system can
    (btrfs, XFS); a plain copy where it cannot."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        if not _copied_in_kernel(src.fileno(), dst.fileno()):
            src.seek(0)
            dst.seek(0)
            dst.truncate()
            shutil.copyfileobj(src, dst, 8 << 20)


_NO_COPY_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)


def _copied_in_kernel(src: int, dst: int) -> bool:
    """Whether ``os.copy_file_range`` copied all of ``src`` to ``dst`` (False: not offered for these files)."""
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is None:
        return False
    remaining = os.fstat(src).st_size
    try:
        while remaining > 0 and (copied := copy_range(src, dst, remaining)):
            remaining -= copied
    except OSError as err:
        if err.errno not in _NO_COPY_RANGE:
            raise
        return False
    return True


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in large blocks (hashlib releases the GIL: threads hash in parallel)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()
