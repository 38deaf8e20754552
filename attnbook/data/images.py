"""Images for chapter 6 (and the ViT of chapter 8): scikit-learn's handwritten digits, embedded and offline.

`load_digits` returns the 1,797 digits of `sklearn.datasets.load_digits` (8 × 8, grey levels 0-16) as
tensors ``(n, 1, 8, 8)`` scaled to [0, 1], split once, stratified by class and seeded, into a training and a
test set. `per_class` draws the few-labels subsets of the data-efficiency experiment; `place_on_canvas`
puts each digit at a random place on a larger blank image, so that where a stroke lies says nothing by itself.
The detection scenes of DETR (and chapter 8's cluttered versions) live in `attnbook.data.scenes` and are
re-exported here (`Scenes`, `make_scenes`, `CLASS_NAMES`), so that chapter 6's images come from one module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attnbook.data.scenes import CLASS_NAMES, Scenes, make_scenes
from attnbook.errors import DTypeError, check_ndim, check_tensor

__all__ = ["CLASS_NAMES", "DIGITS_SOURCE", "Digits", "Scenes", "load_digits", "make_scenes", "per_class",
           "place_on_canvas"]

DIGITS_SOURCE = "scikit-learn's copy of the UCI optical handwritten digits test set (Alpaydin & Kaynak 1998)"


@dataclass
class Digits:
    """A fixed split: images ``(n, 1, 8, 8)`` float in [0, 1], labels ``(n,)`` long in 0..9."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: str = DIGITS_SOURCE

    def __repr__(self) -> str:
        return (f"Digits(train={tuple(self.train_images.shape)}, test={tuple(self.test_images.shape)}, "
                f"source={self.source!r})")


def load_digits(test_size: float = 0.3, seed: int = 0) -> Digits:
    """scikit-learn's digits, split into train and test with the class proportions kept in both.

    The split depends only on ``test_size`` and ``seed`` (not on any global random state), so every chapter and
    test that calls it with the defaults sees the same 1,257 training and 540 test images.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size: expected a fraction in (0, 1), got {test_size}")
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    data = sklearn_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (n, 1, 8, 8) in [0, 1]
    labels = torch.tensor(data.target, dtype=torch.long)
    train, test = train_test_split(torch.arange(len(labels)).numpy(), test_size=test_size, random_state=seed,
                                   stratify=labels.numpy())
    train, test = torch.as_tensor(train), torch.as_tensor(test)
    return Digits(images[train], labels[train], images[test], labels[test])


def per_class(labels: Tensor, count: int, generator: torch.Generator | None = None) -> Tensor:
    """Indices of ``count`` examples of every class (all of a class that has fewer), drawn without replacement.

    ``labels`` is ``(n,)`` integer; returns sorted indices into it. ``generator`` fixes the draw.
    """
    labels = check_tensor("labels", labels)
    check_ndim("labels", labels, 1, "(n,)")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DTypeError(f"labels: expected an integer tensor, got {labels.dtype}")
    if count < 1:
        raise ValueError(f"count: expected at least 1 example per class, got {count}")
    chosen = []
    for cls in labels.unique():
        members = (labels == cls).nonzero().squeeze(1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(chosen).sort().values


def place_on_canvas(images: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Each image ``(n, C, h, w)`` pasted at a random offset on a blank ``size × size`` canvas → ``(n, C, size,
    size)``; every offset from 0 to ``size - h`` (rows) and ``size - w`` (columns) is equally likely."""
    images = check_tensor("images", images)
    check_ndim("images", images, 4, "(n, channels, height, width)")
    n, channels, height, width = images.shape
    if size < max(height, width):
        raise ValueError(f"size: expected at least the image size {max(height, width)}, got {size}")
    rows = torch.randint(0, size - height + 1, (n,), generator=generator)
    cols = torch.randint(0, size - width + 1, (n,), generator=generator)
    canvas = images.new_zeros(n, channels, size, size)
    index = torch.arange(n)[:, None, None, None]
    r = (rows[:, None] + torch.arange(height))[:, None, :, None]  # (n, 1, h, 1)
    c = (cols[:, None] + torch.arange(width))[:, None, None, :]  # (n, 1, 1, w)
    canvas[index, torch.arange(channels)[None, :, None, None], r, c] = images
    return canvas
