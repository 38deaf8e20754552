"""Reproducibility: one call per chapter seeds every random number generator the book uses."""

from __future__ import annotations

import os
import random
import time

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


class Stopwatch:
    """Wall-clock seconds since creation; chapters print their run time at the end with it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def __repr__(self) -> str:
        return f"{self.seconds:.1f} s"
