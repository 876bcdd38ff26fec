"""accelerate's launch and state, the same way for every command line (build, eval, training).

On a machine without GPUs, ``accelerate launch --multi_gpu --num_processes N`` starts N processes, but each knows
its rank only if the state is created in CPU mode (gloo). ``start_state`` does that, and refuses a launch whose
processes would each believe they are rank 0 of 1 (each would do the whole job).
"""

from __future__ import annotations

import os

import torch


class WorldMismatch(RuntimeError):
    """The launcher started several processes but accelerate's state sees only one."""


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def start_state():
    """accelerate's state; on a machine without GPUs, its CPU mode (gloo), so ranks are real ranks. Each process
    gets its share of the machine's cores as torch threads (see ``threads_per_process``)."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    check_world(state)
    if (threads := threads_per_process()) is not None:
        torch.set_num_threads(threads)
    return state


def threads_per_process() -> int | None:
    """The cores of this machine divided among the processes the launcher started on it; None (torch's default)
    for a single process or when the user chose (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``). Several processes
    that each use every core oversubscribe the CPU: on a busy 2-core machine one process with 2 threads ran 7x
    slower than with 1. On a CPU, the image bytes depend on the thread count: set ``OMP_NUM_THREADS`` to compare
    builds made with different process counts."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local == 1 or any(os.environ.get(name) for name in THREAD_VARIABLES):
        return None  # a lone process keeps torch's own choice (and so its exact numerics)
    return max(1, (os.cpu_count() or 1) // local)


def check_world(state) -> None:
    """Refuse to run when every process believes it is rank 0 of 1: each would do the whole job."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != state.num_processes:
        raise WorldMismatch(
            f"the launcher started {launched} processes (WORLD_SIZE={launched}) but accelerate's state sees "
            f"{state.num_processes}: every process would do the whole job. On a machine without GPUs, "
            "accelerate's state must be created with cpu=True (PartialState(cpu=True)); synthdata does this itself."
        )


def local_device() -> torch.device:
    """The device a single process would use, found without starting accelerate (for --dry-run)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
