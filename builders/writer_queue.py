"""A bounded background worker: CPU work (encoding, writing) runs beside GPU work, in submission order.

The queue is bounded so a slow disk slows generation down instead of filling memory, and the first error in the
worker is raised in the submitting thread. With ``background=False`` tasks run inline, which must give exactly
the same output (the tests check it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class TaskQueue:
    def __init__(self, background: bool = True, max_pending: int = 4):
        self.background = background
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="synthdata-writer", daemon=True) if background else None

    def __enter__(self) -> TaskQueue:
        if self._thread:
            self._thread.start()
        return self

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise_if_failed()
        if self._thread:
            self._queue.put((fn, args))
        else:
            fn(*args)

    def _work(self) -> None:
        while (task := self._queue.get()) is not _STOP:
            if self._error is None:
                try:
                    task[0](*task[1])
                except BaseException as err:  # noqa: BLE001 - handed to the submitting thread
                    self._error = err

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError("background writer failed") from self._error

    def __exit__(self, *exc) -> None:
        if self._thread:
            self._queue.put(_STOP)
            self._thread.join()
        if exc[0] is None:
            self._raise_if_failed()
