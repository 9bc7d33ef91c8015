"""How many CPU threads torch should use right now.

On a small shared machine, torch's default (one thread per core) is slow whenever other
processes keep the cores busy: its threads wait for each other at every operation. Measured on
the 2-core development machine at load average ~12 (MiniLM encoding 600 utterances):
2 threads 67-69 s, 1 thread 41 s. On an idle machine the default is the faster one.

:func:`torch_threads` picks one thread when the 1-minute load average exceeds 1.5x the cores
(our own threads alone load the machine up to about the core count), the default otherwise;
``FFR_TORCH_THREADS`` (``ffr_lib.settings``; ``FFR_ENCODER_THREADS``, its older name, still
works) forces a number, for encoding and training alike. The context manager restores the previous
setting, so a step only changes the threads for its own work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ffr_lib.settings import TORCH_THREADS


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def wanted_threads(load: float | None = None, cores: int | None = None) -> int:
    """The thread count for the current load (see the module docstring)."""
    forced = TORCH_THREADS.get()
    if forced:
        return forced
    cores = cores or cpu_count()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            return cores
    return 1 if load > 1.5 * cores else cores


@contextmanager
def torch_threads(threads: int | None = None) -> Iterator[int]:
    """Run the block with ``threads`` (default :func:`wanted_threads`) torch threads."""
    import torch

    previous = torch.get_num_threads()
    chosen = threads or wanted_threads()
    if chosen != previous:
        torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def use_cpu(device: str) -> bool:
    """Whether a trainer asked for ``device`` (``cpu``, or ``auto`` = CUDA when present) runs on
    the CPU: FEM and F2RVLM training use a GPU wherever the step's pod has one."""
    import torch

    return device == "cpu" or not torch.cuda.is_available()
