"""Where a build's time goes: seconds per stage (load models, generate, score, copy to host, encode, write), summed.

Cheap enough to stay on in every build (two clock reads per stage and batch). On a GPU, kernels run
asynchronously, so a device stage waits for the device before it stops its clock; otherwise the time of one
stage would be billed to whichever later stage first touches the result. ``benchmarks/generation.py`` reads
these figures to split a build's wall time into stages and idle time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class StageClock:
    """Seconds per named stage. The generating thread and the writer thread time different stages, so no two
    threads ever add to the same entry."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str, on_device: bool = False) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if on_device and self.device.startswith("cuda"):
                import torch

                torch.cuda.synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start

    def reset(self) -> None:
        self.seconds.clear()

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.seconds.items())
