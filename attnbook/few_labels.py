"""Few labels: a ViT against a CNN of similar size as the number of labelled images grows (chapter 6).

A convolution assumes that nearby pixels belong together and that a pattern means the same wherever it
appears (locality and translation equivariance); a ViT assumes neither and must learn them from data.
`label_curve` measures what that costs: test accuracy of each model for several numbers of labels per class,
over several seeds, every model trained by `train_classifier` with the same optimiser and schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.data.images import per_class
from attnbook.errors import ShapeError, check_ndim, check_tensor
from attnbook.train import fit, progress


class SmallCNN(nn.Module):
    """Two 3 × 3 convolutions with ReLU and 2 × 2 max-pooling, then a linear layer: ``(batch, C, H, W)`` →
    ``(batch, num_classes)``. ``H`` and ``W`` must be multiples of 4."""

    def __init__(self, image_size: int, in_channels: int, num_classes: int, width: int = 24):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size: expected a multiple of 4, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(2 * width * (image_size // 4) ** 2, num_classes)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.classifier(self.features(pixel_values).flatten(1))


def logits_of(model: nn.Module, images: Tensor) -> Tensor:
    """``model(images)`` as a logits tensor, whether the model returns one or an object with ``.logits``."""
    out = model(images)
    return out.logits if hasattr(out, "logits") else out


def _check_pair(images: object, labels: object) -> tuple[Tensor, Tensor]:
    images, labels = check_tensor("images", images), check_tensor("labels", labels)
    check_ndim("images", images, 4, "(n, channels, height, width)")
    if tuple(labels.shape) != (images.shape[0],):
        raise ShapeError(f"labels: expected shape ({images.shape[0]},) (one per image), got {tuple(labels.shape)}")
    return images, labels


def train_classifier(model: nn.Module, images: Tensor, labels: Tensor, epochs: int, batch_size: int = 32,
                     lr: float = 3e-3, weight_decay: float = 0.05, generator: torch.Generator | None = None,
                     desc: str = "training") -> list[float]:
    """AdamW with a one-cycle learning rate (warm up, then anneal) and cross-entropy; returns each epoch's
    mean loss. ``images (n, C, H, W)``, ``labels (n,)``; batches of ``min(batch_size, n)`` reshuffled each epoch."""
    images, labels = _check_pair(images, labels)
    batch_size = min(batch_size, len(labels))
    per_epoch = math.ceil(len(labels) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * per_epoch, pct_start=0.15)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), batch_size):
            chosen = order[start : start + batch_size]
            yield images[chosen], labels[chosen]

    def loss_fn(batch: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(logits_of(model, batch[0]), batch[1])

    return fit(model, optimizer, batches, loss_fn, epochs, scheduler=scheduler, desc=desc)


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """The fraction of ``images (n, C, H, W)`` whose highest logit is the label ``(n,)`` (model in eval mode)."""
    images, labels = _check_pair(images, labels)
    model.eval()
    return (logits_of(model, images).argmax(-1) == labels).float().mean().item()


def epochs_for(examples: int, steps: int, batch_size: int = 32) -> int:
    """Epochs that give at least ``steps`` optimisation steps on ``examples`` images."""
    return math.ceil(steps / math.ceil(examples / min(batch_size, examples)))


def label_curve(make_model: Callable[[], nn.Module], train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                counts: Sequence[int], steps: Sequence[int], seeds: Sequence[int] = (0, 1, 2),
                keep: list[nn.Module] | None = None, **train_kwargs) -> dict[str, Tensor]:
    """Train a fresh ``make_model()`` on ``count`` labelled images per class for every count and seed.

    ``steps[i]`` is the (minimum) number of optimisation steps for ``counts[i]``. The subset and the model's
    initial weights depend on the seed only, so two models compared with the same seeds see the same images.
    Returns ``{"test": (len(counts), len(seeds)), "train": ...}`` accuracies; trained models are appended to
    ``keep`` if given.
    """
    if len(counts) != len(steps):
        raise ValueError(f"steps: expected one per count ({len(counts)}), got {len(steps)}")
    result = {"test": torch.zeros(len(counts), len(seeds)), "train": torch.zeros(len(counts), len(seeds))}
    runs = [(i, j) for i in range(len(counts)) for j in range(len(seeds))]
    for i, j in progress(runs, desc="label curve"):
        generator = torch.Generator().manual_seed(seeds[j])
        chosen = per_class(train[1], counts[i], generator)
        torch.manual_seed(seeds[j])
        model = make_model()
        images, labels = train[0][chosen], train[1][chosen]
        batch_size = train_kwargs.get("batch_size", 32)
        train_classifier(model, images, labels, epochs_for(len(chosen), steps[i], batch_size),
                         generator=generator, **train_kwargs)
        result["test"][i, j] = accuracy(model, *test)
        result["train"][i, j] = accuracy(model, images, labels)
        if keep is not None:
            keep.append(model)
    return result
