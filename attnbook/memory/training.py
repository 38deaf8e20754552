"""Training the memory network of chapter 1 the paper's way: random empty memories, linear start, restarts.

Several restarts train side by side as one batch (`StackedMemN2N`: their weights stacked on a leading axis)
through the book's one loop, `attnbook.train.fit`; what is the memory network's own is a hook: the gradient
clipped per restart, linear start ending when the validation loss stops falling (`attnbook.train.Patience`),
and the learning rate halved every few epochs (a scheduler).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook import repro
from attnbook.data.babi import Batch
from attnbook.memory.model import MemN2N, read_memory
from attnbook.train import Patience, fit

# Test error (%) on bAbI 1k in Sukhbaatar et al. (2015), Table 1, column "PE LS RN" (3 hops, each task trained
# on its own, best of 10 runs): mean 13.9, 11 failed tasks (error > 5%).
PAPER_PE_LS_RN = {1: 0.0, 2: 8.3, 3: 40.3, 4: 2.8, 5: 13.1, 6: 7.6, 7: 17.3, 8: 10.0, 9: 13.2, 10: 15.1,
                  11: 0.9, 12: 0.2, 13: 0.4, 14: 1.7, 15: 0.0, 16: 1.3, 17: 51.0, 18: 11.1, 19: 82.8, 20: 0.0}
# Same table, PE LS trained jointly on all 20 tasks with 1, 2 and 3 hops: the paper's hop comparison.
PAPER_HOPS_JOINT = {2: {1: 62.0, 2: 15.6, 3: 14.0}, 3: {1: 76.9, 2: 31.6, 3: 33.1}}
# Column "PE LS RN joint" (3 hops, one model for all tasks) for tasks 1-3.
PAPER_PE_LS_RN_JOINT = {1: 0.0, 2: 11.4, 3: 21.9}


def add_empty_memories(batch: Batch, rate: float, generator: torch.Generator | None = None) -> Batch:
    """Random noise (RN): insert an empty memory before each sentence with probability ``rate``.

    The later sentences shift to older slots, so the temporal vectors cannot memorise exact positions.
    Empty memories are real slots (masked in); sentences pushed past the last slot are dropped.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate: expected a probability in [0, 1), got {rate}")
    n, m = batch.memory_mask.shape
    blanks = (torch.rand(n, m, generator=generator) < rate) & batch.memory_mask
    position = torch.arange(m) + blanks.long().cumsum(1)  # new slot of each sentence
    keep = batch.memory_mask & (position < m)
    rows = torch.arange(n)[:, None].expand(n, m)[keep]
    stories = torch.zeros_like(batch.stories)
    stories[rows, position[keep]] = batch.stories[keep]
    supporting = torch.zeros_like(batch.supporting)
    supporting[rows, position[keep]] = batch.supporting[keep]
    length = torch.where(keep, position + 1, 0).amax(1)
    return Batch(stories, torch.arange(m) < length[:, None], batch.queries, batch.answers, supporting)

@dataclass(frozen=True)
class MemN2NRecipe:
    """Training settings; defaults follow the paper's bAbI 1k recipe (section 4.2), scaled by ``epochs``.

    SGD with learning rate ``lr`` halved every ``halve_every`` epochs, batches of ``batch_size`` questions
    (loss summed over the batch), gradient norm clipped at ``clip_norm``. Linear start: the softmax is
    removed, learning rate ``linear_lr``, until the validation loss stops falling (no new minimum for
    ``linear_patience`` epochs; at most ``linear_epochs``); then the softmax is back for ``epochs`` epochs.
    ``noise`` is the rate of random empty memories during training. ``optimizer="adam"`` swaps SGD for Adam
    (Kingma & Ba 2015) with the same schedule, which needs fewer epochs. ``fill_memory`` trains (and keeps)
    models that read the released code's fixed buffer (`MemN2N`, `fill_memory`) of
    ``min(memory_size, slots of the training batch)`` slots, the code's ``min(50, longest story)``.
    """

    embed_dim: int = 20
    hops: int = 3
    memory_size: int = 50
    epochs: int = 100
    lr: float = 0.01
    halve_every: int = 25
    batch_size: int = 32
    clip_norm: float = 40.0
    linear_start: bool = True
    linear_lr: float = 0.005
    linear_epochs: int = 30
    linear_patience: int = 1
    noise: float = 0.1
    optimizer: str = "sgd"
    position_encoding: bool = True
    temporal_encoding: bool = True
    fill_memory: bool = False


@dataclass
class MemN2NResult:
    """The kept restart (lowest training loss, or validation error with ``select="val"``), every restart's numbers."""

    model: MemN2N
    best: int
    train_loss: list[float]  # per restart, final, on the training questions
    val_error: list[float]  # per restart
    linear_epochs: int  # epochs spent in linear start
    history: list[list[float]]  # per epoch, per restart: mean training loss per question


Recipe, TrainResult = MemN2NRecipe, MemN2NResult  # the names chapter 1 and the bAbI benchmark import


class StackedMemN2N(nn.Module):
    """The weights of several `MemN2N` restarts stacked on a leading axis, so that they train as one batch.

    ``forward(stories, queries, memory_mask, linear)`` takes ``(R, B, ...)`` inputs (each restart its own
    questions) and returns logits ``(R, B, V)`` through `read_memory`, which broadcasts over the restart axis.
    """

    def __init__(self, models: list[MemN2N]):
        super().__init__()
        first = models[0]
        self.position = first.use_position
        self.slots = first.memory_size if first.fill_memory else None
        self.temporal: nn.Parameter | None = None
        for name, _ in first.named_parameters():
            setattr(self, name, nn.Parameter(torch.stack([dict(m.named_parameters())[name].detach() for m in models])))

    def forward(self, stories: Tensor, queries: Tensor, memory_mask: Tensor, linear: bool = False) -> Tensor:
        return read_memory(self.embeddings, self.temporal, stories, queries, memory_mask, self.position, linear,
                           self.slots)[0]

    @torch.no_grad()
    def unstack(self, models: list[MemN2N]) -> None:
        """Copy restart r's weights into ``models[r]``."""
        for r, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(getattr(self, name)[r])
            model.eval()


def clip_per_restart(params, max_norm: float) -> None:
    """Clip the gradient norm of each restart (leading axis) separately, as if trained alone."""
    params = list(params)
    norms = torch.zeros(params[0].shape[0])
    for p in params:
        if p.grad is not None:
            norms += p.grad.pow(2).flatten(1).sum(1)
    scale = (max_norm / (norms.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        if p.grad is not None:
            p.grad.mul_(scale.view(-1, *[1] * (p.dim() - 1)))


def train_memn2n(train: Batch, val: Batch, vocab_size: int, recipe: MemN2NRecipe = MemN2NRecipe(),
                 restarts: int = 3, generator: torch.Generator | None = None, desc: str = "MemN2N", *,
                 select: str = "train_loss") -> MemN2NResult:
    """Train ``restarts`` memory networks from different random starts at once; keep the one with the lowest
    training loss (the paper picks the best of 10 runs by training error).

    ``select="val"`` keeps instead the restart with the lowest validation error (ties: lowest validation loss),
    which guards against a restart that has memorised the training questions.

    The restarts run as one batch (`StackedMemN2N`). Each restart sees its own batch order and its own random
    empty memories; they share only the epoch at which linear start ends (when their mean validation loss
    stops falling).
    """
    if restarts < 1:
        raise ValueError(f"restarts: expected at least 1, got {restarts}")
    if select not in ("train_loss", "val"):
        raise ValueError(f"select: expected 'train_loss' or 'val', got {select!r}")
    if recipe.optimizer not in ("sgd", "adam"):
        raise ValueError(f"recipe.optimizer: expected 'sgd' or 'adam', got {recipe.optimizer!r}")
    memory_size = min(recipe.memory_size, train.stories.shape[1]) if recipe.fill_memory else recipe.memory_size
    models = [MemN2N(vocab_size, recipe.embed_dim, recipe.hops, memory_size, position_encoding=recipe.position_encoding,
                     temporal_encoding=recipe.temporal_encoding, fill_memory=recipe.fill_memory)
              for _ in range(restarts)]
    stack = StackedMemN2N(models)
    optimizer = (torch.optim.SGD if recipe.optimizer == "sgd" else torch.optim.Adam)(stack.parameters(), lr=recipe.lr)

    def losses(batch: Batch, linear: bool) -> Tensor:
        """Mean cross-entropy of each restart on a fixed batch: ``(restarts,)``."""
        with torch.no_grad():
            logits = stack(batch.stories, batch.queries, batch.memory_mask, linear)  # (R, N, V)
            return F.cross_entropy(logits.transpose(1, 2), batch.answers.expand(restarts, -1),
                                   reduction="none").mean(1)

    def batches() -> Iterator[tuple[Batch, torch.Size]]:
        """Each restart's own shuffled batches with random empty memories, side by side: ``(R · b)`` rows."""
        order = torch.stack([torch.randperm(len(train), generator=generator) for _ in range(restarts)])
        for start in range(0, len(train), recipe.batch_size):
            index = order[:, start: start + recipe.batch_size]  # (R, b)
            part = train[index.flatten()]
            yield (add_empty_memories(part, recipe.noise, generator) if recipe.noise > 0 else part), index.shape

    def loss_fn(linear: bool):
        def loss(item: tuple[Batch, torch.Size]) -> Tensor:
            """Cross-entropy summed over each restart's batch (as the paper's code): ``(restarts,)``."""
            part, shape = item
            logits = stack(part.stories.unflatten(0, shape), part.queries.unflatten(0, shape),
                           part.memory_mask.unflatten(0, shape), linear)  # (R, b, V)
            return F.cross_entropy(logits.transpose(1, 2), part.answers.view(shape), reduction="none").sum(1)
        return loss

    def set_lr(lr: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr

    best_val = math.inf
    patience = Patience(recipe.linear_patience)

    def linear_stalled(epoch: int, loss: list[float]) -> bool:
        """Linear start ends when the mean validation loss has not reached a new minimum for a while."""
        nonlocal best_val
        val_loss = losses(val, linear=True).mean().item()
        improved, best_val = val_loss < best_val, min(val_loss, best_val)
        return patience.update(improved)

    steps = math.ceil(len(train) / recipe.batch_size)
    clip = dict(clip_norm=recipe.clip_norm, clip_grad=clip_per_restart)
    with repro.threads(1):  # the matrices are tiny: a second thread costs more than it saves
        history = []
        if recipe.linear_start:
            set_lr(recipe.linear_lr)
            history += fit(stack, optimizer, batches, loss_fn(True), recipe.linear_epochs, **clip,
                           on_epoch_end=linear_stalled, desc=f"{desc} (linear start)")
        linear_done = len(history)
        set_lr(recipe.lr)
        halving = torch.optim.lr_scheduler.LambdaLR(  # lr · 0.5^(epoch // halve_every), set at every step
            optimizer, lambda step: 0.5 ** (step // steps // recipe.halve_every))
        history += fit(stack, optimizer, batches, loss_fn(False), recipe.epochs, **clip, scheduler=halving, desc=desc)
        train_loss = losses(train, linear=False).tolist()
        val_loss = losses(val, linear=False).tolist()
    stack.unstack(models)
    val_error = [m.error(val) for m in models]
    if select == "val":
        best = min(range(restarts), key=lambda r: (val_error[r], val_loss[r]))
    else:
        best = min(range(restarts), key=train_loss.__getitem__)
    per_question = [[loss * steps / len(train) for loss in epoch] for epoch in history]  # fit: mean per batch
    return MemN2NResult(models[best], best, train_loss, val_error, linear_done, per_question)
