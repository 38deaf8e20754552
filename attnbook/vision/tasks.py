"""Chapter 5's experiments: images whose labels depend on far-away pixels, and the small CNNs that learn them.

`source_task` draws images of ``size × size`` pixels with a few *source* dots and a few *object* pixels. Every
source carries a key (one of ``n_keys``) and a colour (one of ``n_colours``); every object pixel carries the key
of one source and must be labelled with that source's colour. Channels: ``[object marker, source key one-hot,
object key one-hot, colour one-hot]`` (``1 + 2 n_keys + n_colours``; sources and objects write their keys in
separate channels, so an object does not look like a source of its own key). With one source the answer is a global summary of the image ("what colour is the dot?"); with
several, each pixel must find the source whose key matches its own. `TinyCNN` is a stack of 3×3 convolutions
with an optional attention module inserted at a chosen depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.core import attention
from attnbook.train import fit
from attnbook.vision.channel import CBAM, SqueezeExcitation
from attnbook.vision.dual import ChannelAttention, PositionAttention
from attnbook.vision.nonlocal_block import NonLocalBlock, check_image, flatten_positions

IGNORE = -100  # label of pixels that are not objects (skipped by the loss and the accuracy)


@dataclass
class SourceBatch:
    """Images (n, C, H, W), labels (n, H, W) (IGNORE off objects), distance (n, H, W) to the matching source."""

    images: Tensor
    labels: Tensor
    distance: Tensor


def source_task(n: int, size: int = 16, n_sources: int = 1, n_keys: int = 1, n_colours: int = 3,
                n_objects: int = 12, generator: torch.Generator | None = None) -> SourceBatch:
    """Draw ``n`` images of the source-colouring task (see the module's docstring)."""
    if not 1 <= n_sources <= n_keys:
        raise ValueError(f"n_sources: expected 1 <= n_sources <= n_keys={n_keys}, got {n_sources}")
    if n_sources + n_objects > size * size:
        raise ValueError(f"n_objects: {n_sources} sources and {n_objects} objects do not fit {size}×{size} pixels")
    pixels = torch.rand(n, size * size, generator=generator).argsort(dim=1)[:, : n_sources + n_objects]
    sources, objects = pixels[:, :n_sources], pixels[:, n_sources:]  # (n, S), (n, O) flat positions
    keys = torch.rand(n, n_keys, generator=generator).argsort(dim=1)[:, :n_sources]  # distinct keys (n, S)
    colours = torch.randint(n_colours, (n, n_sources), generator=generator)
    which = torch.randint(n_sources, (n, n_objects), generator=generator)  # the source each object follows
    rows = torch.arange(n)[:, None]
    images = torch.zeros(n, 1 + 2 * n_keys + n_colours, size * size)
    images[rows, 1 + keys, sources] = 1.0
    images[rows, 1 + 2 * n_keys + colours, sources] = 1.0
    images[rows, 0, objects] = 1.0
    images[rows, 1 + n_keys + keys.gather(1, which), objects] = 1.0
    labels = torch.full((n, size * size), IGNORE)
    labels[rows, objects] = colours.gather(1, which)
    target = sources.gather(1, which)
    chebyshev = torch.maximum((objects // size - target // size).abs(), (objects % size - target % size).abs())
    distance = torch.full((n, size * size), -1)
    distance[rows, objects] = chebyshev
    shape = (n, size, size)
    return SourceBatch(images.view(n, -1, size, size), labels.view(shape), distance.view(shape))


class DualAttention(nn.Module):
    """DANet's head: position and channel attention side by side, their outputs summed."""

    def __init__(self, channels: int):
        super().__init__()
        self.position, self.channel = PositionAttention(channels), ChannelAttention()

    def forward(self, x: Tensor) -> Tensor:
        return self.position(x) + self.channel(x)


ATTENTION = {
    "none": lambda c: nn.Identity(),
    "nonlocal": lambda c: NonLocalBlock(c, max(c // 2, 4)),
    "se": lambda c: SqueezeExcitation(c, reduction=4),
    "cbam": lambda c: CBAM(c, reduction=4, kernel_size=3),
    "dual": DualAttention,
}


class TinyCNN(nn.Module):
    """``depth`` 3×3 convolutions (GELU) and a 1×1 classifier per pixel; ``attention`` (a name in `ATTENTION`)
    is inserted before convolution ``position`` (0: on the input, ``depth``: after the last)."""

    def __init__(self, in_channels: int, n_classes: int, hidden: int = 16, depth: int = 3,
                 attention: str = "none", position: int = 2):
        super().__init__()
        if attention not in ATTENTION:
            raise ValueError(f"attention: expected one of {sorted(ATTENTION)}, got {attention!r}")
        if not 0 <= position <= depth:
            raise ValueError(f"position: expected 0 <= position <= depth={depth}, got {position}")
        layers: list[nn.Module] = []
        for i in range(depth):
            if i == position:
                layers.append(ATTENTION[attention](in_channels if i == 0 else hidden))
            layers += [nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, padding=1), nn.GELU()]
        if position == depth:
            layers.append(ATTENTION[attention](hidden))
        self.in_channels = in_channels
        self.body, self.head = nn.Sequential(*layers), nn.Conv2d(hidden, n_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_image("x", x, self.in_channels, "in_channels of TinyCNN")
        return self.head(self.body(x))  # (batch, classes, H, W)


def receptive_field(depth: int, kernel_size: int = 3) -> int:
    """Side of the square of input pixels one output pixel of ``depth`` stacked k×k convolutions sees."""
    return depth * (kernel_size - 1) + 1


def train_pixels(model: nn.Module, task: dict, steps: int = 300, batch: int = 32, lr: float = 3e-3,
                 generator: torch.Generator | None = None) -> list[float]:
    """Train ``model`` on fresh batches of ``source_task(**task)``; return the loss of each step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    draws = [source_task(batch, **task, generator=generator) for _ in range(steps)]
    return fit(model, optimizer, lambda: draws,
               lambda b: F.cross_entropy(model(b.images), b.labels, ignore_index=IGNORE), epochs=1)


@torch.no_grad()
def accuracy_by_distance(model: nn.Module, batch: SourceBatch, max_distance: int) -> Tensor:
    """Accuracy on object pixels at each Chebyshev distance 1..max_distance to their source (NaN if none)."""
    model.eval()
    correct = model(batch.images).argmax(1) == batch.labels
    result = torch.full((max_distance,), float("nan"))
    for d in range(1, max_distance + 1):
        at = batch.distance == d
        if at.any():
            result[d - 1] = correct[at].float().mean()
    return result


@torch.no_grad()
def pixel_accuracy(model: nn.Module, batch: SourceBatch) -> float:
    """Accuracy over all object pixels."""
    model.eval()
    on = batch.labels != IGNORE
    return float((model(batch.images).argmax(1) == batch.labels)[on].float().mean())


class AttentionPool2d(nn.Module):
    """Attention pooling: one learned query attends over every position; ``(batch, C, H, W) → (batch, C)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.query = nn.Parameter(torch.zeros(1, 1, channels))
        self.key = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_image("x", x, self.channels, "channels of AttentionPool2d")
        keys, values = flatten_positions(self.key(x)), flatten_positions(x)  # (batch, N, C)
        pooled, _ = attention(self.query.expand(x.shape[0], 1, -1), keys, values)
        return pooled[:, 0]


def majority_task(n: int, size: int = 8, n_dots: int = 3, n_colours: int = 2,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Images (n, n_colours, size, size) with ``n_dots`` coloured dots; label: the most frequent colour (n,).

    With 3 dots and 2 colours there is always a strict majority. Knowing *which* colours are present (what a
    max pool keeps) is not enough; counting them is.
    """
    if n_dots % 2 == 0 or n_colours != 2:
        raise ValueError(f"n_dots, n_colours: expected an odd number of dots and 2 colours, got {n_dots}, {n_colours}")
    pixels = torch.rand(n, size * size, generator=generator).argsort(dim=1)[:, :n_dots]
    colours = torch.randint(n_colours, (n, n_dots), generator=generator)
    images = torch.zeros(n, n_colours, size * size)
    images[torch.arange(n)[:, None], colours, pixels] = 1.0
    labels = (colours.float().mean(1) > 0.5).long()
    return images.view(n, n_colours, size, size), labels


class PooledCNN(nn.Module):
    """3×3 convolutions, then a global pool (``"max"`` or ``"attention"``: `AttentionPool2d`), then a linear
    classifier: ``(batch, C, H, W) → (batch, classes)``."""

    def __init__(self, in_channels: int, n_classes: int, hidden: int = 16, depth: int = 2, pool: str = "max"):
        super().__init__()
        if pool not in ("max", "attention"):
            raise ValueError(f"pool: expected 'max' or 'attention', got {pool!r}")
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, padding=1), nn.GELU()]
        self.body, self.head = nn.Sequential(*layers), nn.Linear(hidden, n_classes)
        self.pool = AttentionPool2d(hidden) if pool == "attention" else None

    def forward(self, x: Tensor) -> Tensor:
        features = self.body(x)
        pooled = features.amax(dim=(2, 3)) if self.pool is None else self.pool(features)
        return self.head(pooled)


COLOURS = ((0.85, 0.2, 0.2), (0.2, 0.65, 0.25), (0.2, 0.35, 0.85), (0.9, 0.6, 0.1))


def render_task(image: Tensor, n_keys: int, ax) -> None:
    """Draw one `source_task` image (C, H, W): sources in their colour, object pixels grey, keys as letters."""
    import numpy as np

    n_colours = image.shape[0] - 1 - 2 * n_keys
    rgb = np.ones((*image.shape[1:], 3))
    rgb[image[0].numpy() > 0] = 0.6
    for c in range(n_colours):
        rgb[image[1 + 2 * n_keys + c].numpy() > 0] = COLOURS[c]
    ax.imshow(rgb)
    if n_keys > 1:
        for k in range(n_keys):
            for i, j in (image[1 + k] + image[1 + n_keys + k] > 0).nonzero().tolist():
                ax.text(j, i, "ABCDEFGH"[k], ha="center", va="center", fontsize=8, color="white")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
