"""The book's one training loop, `fit`, with a progress bar that learners see in Jupyter and the site does not.

Every model of the book trains through `fit`: the Transformer and BERT (chapters 3 and 4), the memory network's
restarts side by side (chapter 1), the graph models' full-batch epochs with early stopping (chapter 7) and the
kernel regression's bandwidth (chapter 2). What differs between them is a hook, not a second loop:

- ``scheduler`` steps the learning rate after every optimisation step (warm-up, decay, halving);
- ``clip_norm`` with ``clip_grad`` clips the gradient (per restart for the memory network);
- a loss with one entry per independent model (restarts) is summed for the backward pass and recorded entry by
  entry;
- ``on_epoch_end(epoch, loss)`` evaluates, keeps a checkpoint and returns True to stop (`Patience` counts the
  epochs without improvement for early stopping).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, Union

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

T = TypeVar("T")
EpochLoss = Union[float, list[float]]  # one number, or one per model trained side by side


def show_progress() -> bool:
    """Progress bars are on unless ``ATTNBOOK_PROGRESS=0`` (the site build and the tests set it)."""
    return os.environ.get("ATTNBOOK_PROGRESS", "1") != "0"


def progress(iterable: Iterable[T], desc: str | None = None, total: int | None = None, **kwargs: Any) -> Iterable[T]:
    """`tqdm.auto.tqdm`, disabled when `show_progress` is false so executed pages stay clean."""
    return tqdm(iterable, desc=desc, total=total, disable=not show_progress(), leave=False, **kwargs)


@dataclass
class Patience:
    """Early stopping: ``update(improved)`` returns True once ``patience`` epochs in a row did not improve.

    ``patience=None`` never stops.
    """

    patience: int | None
    waited: int = 0

    def update(self, improved: bool) -> bool:
        self.waited = 0 if improved else self.waited + 1
        return not improved and self.patience is not None and self.waited >= self.patience


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[], Iterable[Any]],
    loss_fn: Callable[[Any], Tensor],
    epochs: int,
    *,
    clip_norm: float | None = None,
    clip_grad: Callable[[Iterable[Tensor], float], Any] = nn.utils.clip_grad_norm_,
    scheduler: Any | None = None,
    on_epoch_end: Callable[[int, EpochLoss], bool | None] | None = None,
    desc: str = "training",
) -> list[EpochLoss]:
    """Train for up to ``epochs`` passes over ``batches()``; return the mean loss of each epoch.

    ``loss_fn(batch)`` computes the loss (it closes over ``model``): a scalar, or a vector with one loss per
    model trained side by side, whose sum is minimised and whose entries are recorded one by one. ``scheduler``,
    if given, steps once per optimisation step; ``clip_norm`` clips the gradient with
    ``clip_grad(model.parameters(), clip_norm)``, as the memory-network and Transformer papers do.
    ``on_epoch_end(epoch, mean loss)`` runs after each epoch with the model in evaluation mode; returning True
    stops training. The model is left in evaluation mode.
    """
    history: list[EpochLoss] = []
    bar = progress(range(epochs), desc=desc)
    for epoch in bar:
        model.train()
        total: float | Tensor = 0.0
        count = 0
        for batch in batches():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            (loss if loss.dim() == 0 else loss.sum()).backward()
            if clip_norm is not None:
                clip_grad(model.parameters(), clip_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total, count = total + (loss.item() if loss.dim() == 0 else loss.detach()), count + 1
        if count == 0:
            raise ValueError("batches: the callable yielded no batch")
        mean = total / count
        history.append(mean if isinstance(mean, float) else mean.tolist())
        if isinstance(mean, float) and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{mean:.4f}")
        model.eval()
        if on_epoch_end is not None and on_epoch_end(epoch, history[-1]):
            break
    model.eval()
    return history
