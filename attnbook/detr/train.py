"""Chapter 6's DETR recipe: a small model trained on generated scenes in well under a minute on one CPU thread.

The loss is DETR's: λ_ce · loss_ce + λ_L1 · loss_bbox + λ_giou · loss_giou with (1, 5, 2), after the
Hungarian matching with the same weights, plus the same loss on the predictions after every earlier decoder
layer (the paper's auxiliary losses, which it found to help the decoder learn to output the right number of
objects). AdamW with gradient clipping at norm 0.1 as in the paper; a cosine learning-rate decay replaces its
step schedule, because the run is a few minutes, not 500 epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from attnbook.data.scenes import Scenes
from attnbook.detr.matching import set_prediction_loss
from attnbook.detr.metrics import average_precision, coco_average_precision, postprocess
from attnbook.detr.model import DETR, ConvBackbone
from attnbook.repro import threads
from attnbook.train import fit

LOSS_WEIGHTS = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}


def small_detr(num_classes: int, num_queries: int = 8, d_model: int = 64, seed: int = 0) -> DETR:
    """The chapter's DETR: a 3-layer CNN (32×32 → 8×8 cells), 1 encoder and 3 decoder layers, 4 heads.

    Its sine positions use temperature 20 instead of 10000: with only ``d_model / 4`` frequencies per axis
    and 8 cells, most of the paper's frequencies would barely change across the grid.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return DETR(num_classes, num_queries, d_model, num_heads=4, num_encoder_layers=1, num_decoder_layers=3,
                    dim_feedforward=2 * d_model, dropout=0.0,
                    backbone=ConvBackbone(3, (32, 64, 64), (2, 2, 1)), temperature=20.0)


def detr_loss(outputs: dict, targets: list[dict[str, Tensor]], num_classes: int, eos_coef: float = 0.1,
              weights: dict[str, float] = LOSS_WEIGHTS) -> Tensor:
    """The weighted set loss of the final predictions plus that of every ``aux_outputs`` entry."""
    total = torch.zeros(())
    for out in [outputs, *outputs.get("aux_outputs", [])]:
        losses = set_prediction_loss(out, targets, num_classes, eos_coef, weights["loss_ce"],
                                     weights["loss_bbox"], weights["loss_giou"])
        total = total + sum(weights[name] * value for name, value in losses.items())
    return total


def train_detr(model: DETR, scenes: Scenes, epochs: int, batch_size: int = 16, lr: float = 1e-3,
               eos_coef: float = 0.1, auxiliary: bool = True, seed: int = 0,
               monitor: Callable[[int], None] | None = None, monitor_every: int = 16,
               desc: str = "DETR") -> list[float]:
    """Train ``model`` on ``scenes`` (shuffled each epoch from ``seed``) on one thread; mean loss per epoch.

    ``monitor(step)``, if given, runs without gradients every ``monitor_every`` optimisation steps, from step
    0 to the last, e.g. to record how the predictions change during training.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(scenes) / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    step = 0

    def watch() -> None:
        if monitor is not None and (step % monitor_every == 0 or step == steps):
            with torch.no_grad():
                monitor(step)
            model.train()

    def batches() -> Sequence[Tensor]:
        return torch.randperm(len(scenes), generator=generator).split(batch_size)

    def loss_fn(index: Tensor) -> Tensor:
        nonlocal step
        watch()
        step += 1
        outputs = model(scenes.images[index], auxiliary=auxiliary)
        return detr_loss(outputs, [scenes.targets[i] for i in index.tolist()], model.num_classes, eos_coef)

    with threads(1):
        history = fit(model, optimizer, batches, loss_fn, epochs, clip_norm=0.1, scheduler=scheduler, desc=desc)
        watch()
    return history


@torch.no_grad()
def predict(model: DETR, images: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
    """``pred_logits`` and ``pred_boxes`` for many images, in evaluation mode and in batches."""
    model.eval()
    parts = [model(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return {key: torch.cat([p[key] for p in parts]) for key in ("pred_logits", "pred_boxes")}


def evaluate(model: DETR, scenes: Scenes) -> dict[str, float]:
    """AP50 and COCO's AP (0.5:0.95) of ``model``'s detections on ``scenes``."""
    detections = postprocess(predict(model, scenes.images))
    return {"AP50": average_precision(detections, scenes.targets, 0.5),
            "AP": coco_average_precision(detections, scenes.targets)}
