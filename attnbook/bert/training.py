"""Training BERT (chapter 4): pretraining with the two heads, fine-tuning a classifier, and their accuracies.

Both loops are the book's one loop, `attnbook.train.fit`: pretraining evaluates after every ``eval_every``
steps through its ``on_epoch_end`` hook, under AdamW with linear warm-up then linear decay, as BERT was trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbook.bert.heads import BertForPreTraining, BertForSequenceClassification, pretraining_loss
from attnbook.data.text import IGNORE_INDEX
from attnbook.train import fit


def pretrain(
    model: BertForPreTraining,
    sample: Callable[[int], tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]],
    steps: int,
    evaluate: Callable[[], float],
    eval_every: int = 25,
    lr: float = 2e-3,
    warmup: int = 30,
    desc: str = "pretraining",
) -> tuple[list[int], list[float]]:
    """Train with masked-LM (+ next-sentence) loss; return the steps and ``evaluate()`` after every ``eval_every``.

    ``sample(step)`` returns ``(input_ids, token_type_ids, attention_mask, mlm_labels, nsp_labels or None)``;
    AdamW with linear warm-up then linear decay, as BERT was trained. Only the chosen positions are scored.
    """
    if steps < eval_every or eval_every < 1:
        raise ValueError(f"steps: expected at least eval_every={eval_every} steps, got {steps}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / steps))

    def loss_fn(batch: tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]) -> Tensor:
        ids, types, mask, labels, nsp = batch
        chosen = labels != IGNORE_INDEX
        return pretraining_loss(model(ids, types, mask, mlm_positions=chosen), labels[chosen], nsp)

    done, scores = [0], [evaluate()]

    def chunk() -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]]:
        """The next ``eval_every`` steps' batches: one "epoch" of `fit` is one chunk between evaluations."""
        start = done[-1]
        return (sample(s) for s in range(start, start + eval_every))

    def record(chunk_index: int, loss: float) -> None:
        done.append(done[-1] + eval_every)
        scores.append(evaluate())

    fit(model, optimizer, chunk, loss_fn, steps // eval_every, clip_norm=1.0, scheduler=schedule,
        on_epoch_end=record, desc=desc)
    return done, scores


@torch.no_grad()
def masked_lm_accuracy(model: BertForPreTraining, input_ids: Tensor, labels: Tensor,
                       token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None) -> float:
    """Fraction of the chosen positions (labels ≠ -100) whose token the masked-LM head ranks first."""
    model.eval()
    chosen = labels != IGNORE_INDEX
    logits = model(input_ids, token_type_ids, attention_mask, mlm_positions=chosen).mlm_logits
    return (logits.argmax(-1) == labels[chosen]).float().mean().item()


def fine_tune(model: BertForSequenceClassification, batch: dict[str, Tensor], labels: Tensor, epochs: int,
              lr: float = 1e-3, batch_size: int = 32, desc: str = "fine-tuning") -> list[float]:
    """Train every weight of a classifier on ``batch`` (encoded inputs) and ``labels``; return epoch losses."""
    n = labels.shape[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    def batches() -> Iterator[Tensor]:
        order = torch.randperm(n)
        return iter(order.split(batch_size))

    def loss_fn(rows: Tensor) -> Tensor:
        logits = model(batch["input_ids"][rows], batch["token_type_ids"][rows], batch["attention_mask"][rows])
        return F.cross_entropy(logits, labels[rows])

    return fit(model, optimizer, batches, loss_fn, epochs, desc=desc)


@torch.no_grad()
def classification_accuracy(model: BertForSequenceClassification, batch: dict[str, Tensor], labels: Tensor) -> float:
    """Fraction of rows whose arg-max logit is the label."""
    model.eval()
    logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    return (logits.argmax(-1) == labels).float().mean().item()
