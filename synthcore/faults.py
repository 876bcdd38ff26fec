"""Faults every command line ends the same way: one message naming the path and what to do, a documented exit code.

- the output directory cannot be used (``OutputDirError``): exit 5, nothing was written;
- writing failed on the way (disk full, a file-size limit, a read-only or failing disk, no permission): exit 6,
  what was finished is kept;
- Ctrl-C (SIGINT) and SIGTERM: exit 130 and 143 (as a shell reports them), after the same cleanup as any failure.
"""

from __future__ import annotations

import errno
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthcore.outdir import OutputDirError

OUTPUT_REFUSED = 5
WRITE_FAILED = 6

WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device: free some space there, or choose another --output-dir",
    errno.EDQUOT: "disk quota exceeded: free some space there, or choose another --output-dir",
    errno.EFBIG: "a file grew larger than this system allows (a file-size limit, see `ulimit -f`)",
    errno.EROFS: "the file system is read-only: choose a writable --output-dir",
    errno.EACCES: "permission denied: choose a writable --output-dir",
    errno.EPERM: "operation not permitted: choose a writable --output-dir",
    errno.EIO: "input/output error: the disk may be failing; check it, or choose another --output-dir",
}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup (``finally``, context managers) runs as for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` (the previous handler is restored after it)."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_failure(err: BaseException) -> OSError | None:
    """The failed write behind ``err`` (itself, or what caused it), when it is one of ``WRITE_ERRORS``."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in WRITE_ERRORS:
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def report_fault(err: BaseException, output_dir: str | Path, kept: str) -> int | None:
    """Print the one message for a fault of the run and return its exit code; None when ``err`` is not one.
    ``kept``: what is left for the retry, in the command's words."""
    if isinstance(err, OutputDirError):
        print(f"error: {err}", file=sys.stderr)
        return OUTPUT_REFUSED
    if isinstance(err, (KeyboardInterrupt, Terminated)):
        name = "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"
        print(f"interrupted ({name}). {kept}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)
    if (cause := write_failure(err)) is not None:
        where = cause.filename or f"to {output_dir}"
        print(f"error: writing {where} failed: {WRITE_ERRORS[cause.errno]}. {kept}", file=sys.stderr)
        return WRITE_FAILED
    return None
