"""Generated detection scenes for chapter 6 (DETR) and chapter 8 (attention maps on cluttered images).

Each scene is a small RGB image with a few non-overlapping shapes (`CLASS_NAMES`) of random colours and
sizes. Targets follow DETR's and HuggingFace's format: per image a dict with ``class_labels`` (k,) and
``boxes`` (k, 4) as normalised (cx, cy, w, h), each box the tight extent of the shape's pixels. With
``clutter=True`` the same seed draws the very same shapes (positions, sizes, colours, labels), painted over a
textured background with distracting strokes instead of a plain dark one, so chapter 8 can ask whether
attention still finds the objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CLASS_NAMES: tuple[str, ...] = ("rectangle", "disc")
"""Label i of a target is the shape ``CLASS_NAMES[i]``."""


@dataclass
class Scenes:
    """Scenes and their objects. Shapes: images (n, 3, H, W) in [0, 1], masks (n, H, W) bool.

    ``targets[i]`` is ``{"class_labels": LongTensor (k,), "boxes": FloatTensor (k, 4)}`` with normalised
    (cx, cy, w, h) boxes; ``masks`` marks the pixels that belong to some object.
    """

    images: Tensor
    targets: list[dict[str, Tensor]]
    masks: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: slice | int) -> "Scenes":
        """A sub-collection of scenes (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        if not isinstance(index, slice):
            raise TypeError(f"index: expected an int or a slice, got {type(index).__name__}")
        return Scenes(self.images[index], self.targets[index], self.masks[index])


def _shape_mask(label: int, top: int, left: int, height: int, width: int, size: int) -> np.ndarray:
    """The (size, size) boolean pixels of a rectangle or of a disc inscribed in the given box."""
    mask = np.zeros((size, size), dtype=bool)
    if CLASS_NAMES[label] == "rectangle":
        mask[top : top + height, left : left + width] = True
    else:  # a disc: pixel centres within the inscribed circle
        rows, cols = np.mgrid[0:size, 0:size] + 0.5
        radius = height / 2
        mask = (rows - top - radius) ** 2 + (cols - left - radius) ** 2 <= radius**2
    return mask


def _place(rng: np.random.Generator, count: int, size: int) -> list[tuple[int, ...]]:
    """Draw ``count`` shapes whose boxes, grown by one pixel, do not overlap: (label, top, left, h, w) each."""
    low, high = max(3, round(size * 0.19)), max(4, round(size * 0.44))
    for _ in range(50):  # restarts: a crowded first layout may leave no room for the last shape
        taken, shapes = np.zeros((size, size), dtype=bool), []
        for _ in range(100 * count):
            if len(shapes) == count:
                return shapes
            label = int(rng.integers(len(CLASS_NAMES)))
            height = int(rng.integers(low, high + 1))
            width = height if CLASS_NAMES[label] == "disc" else int(rng.integers(low, high + 1))
            top, left = int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1))
            if taken[max(0, top - 1) : top + height + 1, max(0, left - 1) : left + width + 1].any():
                continue
            taken[top : top + height, left : left + width] = True
            shapes.append((label, top, left, height, width))
        if len(shapes) == count:
            return shapes
    raise ValueError(f"max_objects: could not place {count} non-overlapping shapes in a {size}x{size} image")


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated, bright RGB colour (HSV with saturation and value at least 0.6)."""
    hue, sat, val = rng.uniform(0, 6), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0)
    x = val * sat * (1 - abs(hue % 2 - 1))
    c = val * sat
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(hue)]
    return np.array(rgb) + (val - c)


def _clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (3, size, size) background: smooth colour noise plus a few thin random strokes."""
    coarse = rng.uniform(0.0, 0.45, size=(1, 3, 4, 4)).astype(np.float32)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(size, size), mode="bilinear",
                                             align_corners=False)[0].numpy()
    background = smooth + rng.normal(0.0, 0.04, size=smooth.shape)
    for _ in range(int(rng.integers(3, 7))):  # strokes: short line segments one pixel wide
        (r0, c0), (r1, c1) = rng.uniform(0, size, size=(2, 2))
        steps = np.linspace(0, 1, 2 * size)
        rows = np.clip((r0 + (r1 - r0) * steps).astype(int), 0, size - 1)
        cols = np.clip((c0 + (c1 - c0) * steps).astype(int), 0, size - 1)
        background[:, rows, cols] = _colour(rng)[:, None] * rng.uniform(0.5, 0.8)
    return background


def make_scenes(n: int, image_size: int = 32, min_objects: int = 1, max_objects: int = 3, clutter: bool = False,
                seed: int = 0) -> Scenes:
    """Generate ``n`` scenes of ``image_size``² pixels with ``min_objects`` to ``max_objects`` shapes each.

    Deterministic in ``seed``. The shapes come from one random stream and the cluttered background from
    another, so ``clutter=True`` and ``clutter=False`` give the same objects, targets and masks.
    """
    if n < 1:
        raise ValueError(f"n: expected at least one scene, got {n}")
    if image_size < 8:
        raise ValueError(f"image_size: expected at least 8 pixels, got {image_size}")
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"min_objects, max_objects: expected 0 <= min <= max, got {min_objects}, {max_objects}")
    shapes_rng, clutter_rng = (np.random.default_rng([seed, stream]) for stream in (0, 1))
    images = np.empty((n, 3, image_size, image_size), dtype=np.float32)
    masks = np.zeros((n, image_size, image_size), dtype=bool)
    targets = []
    for i in range(n):
        count = int(shapes_rng.integers(min_objects, max_objects + 1))
        background = shapes_rng.uniform(0.0, 0.15, size=(3, 1, 1)) * np.ones((3, image_size, image_size))
        colours = [_colour(shapes_rng) for _ in range(count)]
        shapes = _place(shapes_rng, count, image_size)
        if clutter:
            background = _clutter(clutter_rng, image_size)
        labels, boxes = [], []
        for (label, top, left, height, width), colour in zip(shapes, colours):
            pixels = _shape_mask(label, top, left, height, width, image_size)
            background[:, pixels] = colour[:, None]
            masks[i] |= pixels
            rows, cols = np.nonzero(pixels)
            x0, x1, y0, y1 = cols.min(), cols.max() + 1, rows.min(), rows.max() + 1
            boxes.append([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
            labels.append(label)
        images[i] = np.clip(background, 0.0, 1.0)
        targets.append({"class_labels": torch.tensor(labels, dtype=torch.long),
                        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) / image_size})
    return Scenes(torch.from_numpy(images), targets, torch.from_numpy(masks))
