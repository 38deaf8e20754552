"""Detection as set prediction (chapter 6): the Hungarian matching and DETR's set loss (Carion et al. 2020).

DETR predicts a fixed set of N (class, box) pairs per image. To compare that set with the k < N objects of the
image, each object is given its own prediction by the one-to-one assignment of least total cost

    cost(i, j) = − cost_class · p_i(c_j) + cost_bbox · ‖b_i − b_j‖₁ − cost_giou · GIoU(b_i, b_j),

found exactly by the Hungarian algorithm (`scipy.optimize.linear_sum_assignment`). Matched predictions learn
their object's class and box; the other N − k learn the extra class "no object", down-weighted by
``eos_coef``. Predictions are ``{"pred_logits": (batch, N, classes + 1), "pred_boxes": (batch, N, 4)}``;
targets a list of ``{"class_labels": (k,), "boxes": (k, 4)}``, boxes as normalised (cx, cy, w, h).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from attnbook.detr.boxes import box_cxcywh_to_xyxy, generalized_box_iou
from attnbook.errors import ShapeError, check_ndim, check_tensor

Outputs = dict[str, Tensor]
Targets = list[dict[str, Tensor]]


def _check(outputs: Outputs, targets: Targets) -> tuple[Tensor, Tensor]:
    """Return ``(logits, boxes)`` after checking them and the targets against each other."""
    if not isinstance(outputs, dict) or "pred_boxes" not in outputs or "pred_logits" not in outputs:
        raise KeyError("outputs: expected a dict with 'pred_logits' and 'pred_boxes'")
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    check_ndim("outputs['pred_logits']", check_tensor("outputs['pred_logits']", logits), 3,
               "(batch, queries, classes + 1)")
    check_ndim("outputs['pred_boxes']", check_tensor("outputs['pred_boxes']", boxes), 3, "(batch, queries, 4)")
    if boxes.shape[:2] != logits.shape[:2] or boxes.shape[-1] != 4:
        raise ShapeError(f"outputs['pred_boxes']: expected shape {(*logits.shape[:2], 4)}, got {tuple(boxes.shape)}")
    if not isinstance(targets, (list, tuple)) or len(targets) != logits.shape[0]:
        raise ValueError(f"targets: expected a list of {logits.shape[0]} dicts (one per image), got {targets!r:.60}")
    for i, target in enumerate(targets):
        if "class_labels" not in target or "boxes" not in target:
            raise KeyError(f"targets[{i}]: expected keys 'class_labels' and 'boxes'")
        k = target["class_labels"].shape[0]
        if target["class_labels"].dim() != 1 or target["boxes"].shape != (k, 4):
            raise ShapeError(f"targets[{i}]: expected class_labels (k,) and boxes (k, 4), got "
                             f"{tuple(target['class_labels'].shape)} and {tuple(target['boxes'].shape)}")
    return logits, boxes


def matching_cost(logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor, cost_class: float = 1.0,
                  cost_bbox: float = 5.0, cost_giou: float = 2.0) -> Tensor:
    """The ``(queries, k)`` cost of giving object j to prediction i, for one image.

    logits ``(queries, classes + 1)``, boxes ``(queries, 4)``, labels ``(k,)``, target_boxes ``(k, 4)``.
    """
    probability = logits.softmax(-1)[:, labels]  # (queries, k): p_i(c_j)
    l1 = torch.cdist(boxes, target_boxes, p=1)
    giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))
    return cost_bbox * l1 - cost_class * probability - cost_giou * giou


@torch.no_grad()
def hungarian_match(outputs: Outputs, targets: Targets, cost_class: float = 1.0, cost_bbox: float = 5.0,
                    cost_giou: float = 2.0) -> list[tuple[Tensor, Tensor]]:
    """One ``(prediction_indices, target_indices)`` pair of int64 tensors per image, the least-cost assignment.

    Each pair has min(queries, k) entries, prediction indices in increasing order; an image with no objects
    gets two empty tensors.
    """
    if cost_class == cost_bbox == cost_giou == 0:
        raise ValueError("cost_class, cost_bbox, cost_giou: expected at least one non-zero cost")
    logits, boxes = _check(outputs, targets)
    matches = []
    for start in range(0, logits.shape[0], _CHUNK):  # the batched cost grows with the square of the batch
        chunk = slice(start, start + _CHUNK)
        matches += _match_chunk(logits[chunk], boxes[chunk], targets[chunk], cost_class, cost_bbox, cost_giou)
    return matches


_CHUNK = 64


def _match_chunk(logits: Tensor, boxes: Tensor, targets: Targets, cost_class: float, cost_bbox: float,
                 cost_giou: float) -> list[tuple[Tensor, Tensor]]:
    batch, queries = logits.shape[:2]
    sizes = [len(t["class_labels"]) for t in targets]
    labels = torch.cat([t["class_labels"] for t in targets])
    cost = matching_cost(logits.flatten(0, 1), boxes.flatten(0, 1), labels, torch.cat([t["boxes"] for t in targets]),
                         cost_class, cost_bbox, cost_giou)  # every query against every object of the chunk
    cost = cost.view(batch, queries, sum(sizes)).cpu()
    matches = []
    for i, image_cost in enumerate(cost.split(sizes, dim=-1)):  # keep image i's queries and objects
        rows, cols = linear_sum_assignment(image_cost[i].numpy())
        matches.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return matches


def set_prediction_loss(outputs: Outputs, targets: Targets, num_classes: int, eos_coef: float = 0.1,
                        cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                        matches: list[tuple[Tensor, Tensor]] | None = None) -> dict[str, Tensor]:
    """DETR's loss after matching: ``loss_ce``, ``loss_bbox`` (L1) and ``loss_giou`` (1 − GIoU).

    ``loss_ce`` is the cross-entropy over every query, target "no object" (index ``num_classes``) for the
    unmatched ones, whose weight is ``eos_coef``; the box losses are summed over matched pairs and divided by
    the number of objects in the batch (at least one). ``matches`` defaults to `hungarian_match`'s.
    """
    logits, boxes = _check(outputs, targets)
    if logits.shape[-1] != num_classes + 1:
        raise ShapeError(f"outputs['pred_logits']: expected {num_classes + 1} classes (num_classes + 'no object'), "
                         f"got shape {tuple(logits.shape)}")
    if matches is None:
        matches = hungarian_match(outputs, targets, cost_class, cost_bbox, cost_giou)
    image = torch.cat([torch.full_like(pred, i) for i, (pred, _) in enumerate(matches)])
    query = torch.cat([pred for pred, _ in matches])
    classes = torch.full(logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)
    classes[image, query] = torch.cat([t["class_labels"][obj] for t, (_, obj) in zip(targets, matches)])
    weight = torch.ones(num_classes + 1, device=logits.device)
    weight[-1] = eos_coef
    loss_ce = F.cross_entropy(logits.transpose(1, 2), classes, weight)

    num_boxes = max(sum(len(t["class_labels"]) for t in targets), 1)
    matched = boxes[image, query]
    wanted = torch.cat([t["boxes"][obj] for t, (_, obj) in zip(targets, matches)])
    loss_bbox = F.l1_loss(matched, wanted, reduction="sum") / num_boxes
    giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(matched), box_cxcywh_to_xyxy(wanted)))
    loss_giou = (1 - giou).sum() / num_boxes
    return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
