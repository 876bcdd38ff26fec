"""Work that waits on files or on C code (Parquet reads, image decodes, PNG encodes), spread over threads.

pyarrow, zlib and Pillow's codecs release the GIL, so a few threads read or encode that many files at once; on a
GPU node with dozens of cores, the export's reading of thousands of files would otherwise run on one.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item, Result = TypeVar("Item"), TypeVar("Result")

IO_THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def ordered_map(fn: Callable[[Item], Result], items: Iterable[Item], threads: int = IO_THREADS) -> Iterator[Result]:
    """``fn`` of each item, in the items' order, computed on ``threads`` threads with at most two per thread
    waiting to be taken: memory stays bounded however many items there are. ``items`` is drawn on the calling
    thread (work that must stay on it, drawing text with a shared font, say, goes there)."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="synthdata-io") as pool:
        pending: deque[Future[Result]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
