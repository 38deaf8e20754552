"""Boxes for DETR (chapter 6): the two formats, intersection over union, and its generalised form.

DETR predicts boxes as normalised (cx, cy, w, h); overlaps are computed on corners (x0, y0, x1, y1). The
generalised IoU of Rezatofighi et al. (2019), GIoU = IoU − area(C \\ (A ∪ B)) / area(C) with C the smallest box
enclosing A and B, still ranks boxes that do not overlap at all (IoU 0) by how far apart they are, so the box
loss 1 − GIoU has a gradient everywhere. Shape legend: ``(n, 4)`` boxes; pairwise results are ``(n, m)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnbook.errors import ShapeError, check_tensor


def _check_boxes(name: str, boxes: object, corners: bool = False) -> Tensor:
    boxes = check_tensor(name, boxes)
    if boxes.dim() < 1 or boxes.shape[-1] != 4:
        raise ShapeError(f"{name}: expected shape (..., 4), got {tuple(boxes.shape)}")
    if corners and not (boxes[..., 2:] >= boxes[..., :2]).all():
        raise ValueError(f"{name}: expected corners (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0")
    return boxes


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) → (x0, y0, x1, y1), over the last dimension."""
    cx, cy, w, h = _check_boxes("boxes", boxes).unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(x0, y0, x1, y1) → (cx, cy, w, h), over the last dimension."""
    x0, y0, x1, y1 = _check_boxes("boxes", boxes).unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Areas ``(n,)`` of corner boxes ``(n, 4)``."""
    boxes = _check_boxes("boxes", boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _pairwise(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union ``(n, m)`` of every pair of corner boxes."""
    for name, boxes in (("boxes1", boxes1), ("boxes2", boxes2)):
        _check_boxes(name, boxes, corners=True)
        if boxes.dim() != 2:
            raise ShapeError(f"{name}: expected shape (n, 4), got {tuple(boxes.shape)}")
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (n, m, 2)
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0)
    inter = overlap[..., 0] * overlap[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return inter, union


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU ``(n, m)`` = area(A ∩ B) / area(A ∪ B) of corner boxes ``boxes1 (n, 4)`` and ``boxes2 (m, 4)``."""
    inter, union = _pairwise(boxes1, boxes2)
    return inter / union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU ``(n, m)`` = IoU − area(C \\ (A ∪ B)) / area(C), in [−1, 1]; C is the box that encloses A and B."""
    inter, union = _pairwise(boxes1, boxes2)
    top_left = torch.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    size = (bottom_right - top_left).clamp(min=0)
    enclosing = size[..., 0] * size[..., 1]
    return inter / union - (enclosing - union) / enclosing
