"""Training the book's sequence-to-sequence models (chapter 3): label smoothing, warm-up, teacher forcing.

`train_seq2seq` runs the book's one loop, `attnbook.train.fit`, with the Transformer paper's ingredients: Adam
with β₂ = 0.98, a learning rate that warms up then decays (`warmup_then_decay`), label smoothing
(`label_smoothing_loss`) and gradient clipping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from attnbook.errors import ShapeError, check_ndim, check_tensor
from attnbook.train import fit

def label_smoothing_loss(logits: Tensor, target: Tensor, smoothing: float = 0.1,
                         ignore_index: int = -100) -> Tensor:
    """Cross-entropy against a smoothed target: (1 - ε) on the true class plus ε spread evenly over all V.

    Szegedy et al. (2016), used by the Transformer with ε = 0.1. Equals
    ``F.cross_entropy(logits, target, label_smoothing=ε, ignore_index=...)``. logits ``(N, V)``, target ``(N,)``.
    """
    check_tensor("logits", logits)
    check_ndim("logits", logits, 2, "(N, vocab)")
    check_tensor("target", target)
    if target.shape != logits.shape[:1]:
        raise ShapeError(f"target: expected shape ({logits.shape[0]},) to match logits, got {tuple(target.shape)}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing: expected a value in [0, 1), got {smoothing}")
    keep = target != ignore_index
    log_probs = torch.log_softmax(logits[keep], dim=-1)
    nll = -log_probs.gather(-1, target[keep, None]).squeeze(-1)
    uniform = -log_probs.mean(dim=-1)
    return ((1.0 - smoothing) * nll + smoothing * uniform).mean()



def warmup_then_decay(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate rising linearly for ``warmup`` steps, then falling linearly to 5% at step ``total``.

    A short, CPU-friendly stand-in for the paper's schedule lr ∝ min(step^-0.5, step · warmup^-1.5).
    """
    if not 0 < warmup < total:
        raise ValueError(f"warmup: expected 0 < warmup < total={total}, got {warmup}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.05, (total - step) / (total - warmup)))
    )


def train_seq2seq(model: nn.Module, batches: Callable[[], Sequence[tuple[Tensor, Tensor]]], epochs: int,
                  lr: float = 3e-3, warmup: int = 100, smoothing: float = 0.1, pad_id: int = 0,
                  desc: str = "training") -> list[float]:
    """Teacher-forced training with Adam (β₂ = 0.98), warm-up, label smoothing and gradient clipping.

    ``batches()`` yields ``(src (batch, n_s), tgt (batch, n_t))`` with tgt = BOS … EOS; the model sees
    ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``. Returns the mean loss of each epoch.
    """
    steps_per_epoch = sum(1 for _ in batches())
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    scheduler = warmup_then_decay(optimizer, warmup, epochs * steps_per_epoch)

    def loss_fn(batch: tuple[Tensor, Tensor]) -> Tensor:
        src, tgt = batch
        logits = model(src, tgt[:, :-1])
        return label_smoothing_loss(logits.flatten(0, 1), tgt[:, 1:].flatten(), smoothing, ignore_index=pad_id)

    return fit(model, optimizer, batches, loss_fn, epochs, clip_norm=1.0, scheduler=scheduler, desc=desc)
