"""Reproducibility: one call per chapter seeds every random number generator the book uses."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def set_seed(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a `torch.Generator` seeded the same for explicit use."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def cpu_threads() -> int:
    """Threads PyTorch uses: ``ATTNBOOK_THREADS`` if set, else PyTorch's default (the machine's cores)."""
    if "ATTNBOOK_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["ATTNBOOK_THREADS"]))
    return torch.get_num_threads()


@contextmanager
def threads(count: int | None = 1) -> Iterator[None]:
    """Run a block with ``count`` PyTorch threads and restore the previous setting after (None: leave it).

    The book's models are tiny: a second intra-op thread gains little on them, and on a machine whose cores are
    busy (tests in parallel, other programs) its synchronisation costs many times what it saves.
    """
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Stopwatch:
    """Wall-clock seconds since creation; chapters print their run time at the end with it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def __repr__(self) -> str:
        return f"{self.seconds:.1f} s"
