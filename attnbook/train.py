"""A small training loop with a progress bar that learners see in Jupyter and the rendered site does not."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

T = TypeVar("T")


def show_progress() -> bool:
    """Progress bars are on unless ``ATTNBOOK_PROGRESS=0`` (the site build and the tests set it)."""
    return os.environ.get("ATTNBOOK_PROGRESS", "1") != "0"


def progress(iterable: Iterable[T], desc: str | None = None, total: int | None = None, **kwargs: Any) -> Iterable[T]:
    """`tqdm.auto.tqdm`, disabled when `show_progress` is false so executed pages stay clean."""
    return tqdm(iterable, desc=desc, total=total, disable=not show_progress(), leave=False, **kwargs)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[], Iterable[Any]],
    loss_fn: Callable[[Any], Tensor],
    epochs: int,
    *,
    clip_norm: float | None = None,
    scheduler: Any | None = None,
    desc: str = "training",
) -> list[float]:
    """Train for ``epochs`` passes over ``batches()``; return the mean loss of each epoch.

    ``loss_fn(batch)`` computes the loss (it closes over ``model``); ``scheduler``, if given, steps once per
    optimisation step; ``clip_norm`` clips the gradient norm, as the memory-network and Transformer papers do.
    """
    history: list[float] = []
    bar = progress(range(epochs), desc=desc)
    for _ in bar:
        model.train()
        total, count = 0.0, 0
        for batch in batches():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            if clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total, count = total + loss.item(), count + 1
        if count == 0:
            raise ValueError("batches: the callable yielded no batch")
        history.append(total / count)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history
