"""Average precision, the detection score DETR is judged by (chapter 6), computed as COCO computes it.

For one class and one IoU threshold, every detection (over all images) is taken in order of decreasing score;
it is a true positive if it overlaps a not-yet-claimed object of its class by IoU ≥ threshold (the best such
object claims it), else a false positive. Precision against recall is made monotone (each precision is the
best at that recall or beyond) and averaged at the 101 recalls 0, 0.01, …, 1. AP50 is that average at IoU
0.5, averaged over classes that have objects; COCO's AP averages it further over the thresholds 0.5, 0.55, …,
0.95. Detections: a list of ``{"scores": (d,), "labels": (d,), "boxes": (d, 4)}``, targets a list of
``{"class_labels": (k,), "boxes": (k, 4)}``; boxes in any one (cx, cy, w, h) scale, e.g. normalised.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from attnbook.detr.boxes import box_cxcywh_to_xyxy, box_iou
from attnbook.errors import ShapeError

RECALLS = np.linspace(0.0, 1.0, 101)
COCO_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def postprocess(outputs: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """One detection per query: its most probable real class, that probability as score, and its box."""
    probabilities = outputs["pred_logits"].softmax(-1)[..., :-1]  # drop "no object"
    scores, labels = probabilities.max(-1)
    return [{"scores": s, "labels": l, "boxes": b} for s, l, b in zip(scores, labels, outputs["pred_boxes"])]


def _check(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
    if len(detections) != len(targets):
        raise ValueError(f"detections: expected one dict per image ({len(targets)}), got {len(detections)}")
    for i, det in enumerate(detections):
        if not {"scores", "labels", "boxes"} <= det.keys():
            raise KeyError(f"detections[{i}]: expected keys 'scores', 'labels' and 'boxes'")
        d = det["scores"].shape[0]
        if det["labels"].shape != (d,) or det["boxes"].shape != (d, 4):
            raise ShapeError(f"detections[{i}]: expected scores (d,), labels (d,), boxes (d, 4), got "
                             f"{tuple(det['scores'].shape)}, {tuple(det['labels'].shape)}, {tuple(det['boxes'].shape)}")


def _match_image(scores: Tensor, ious: Tensor, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True-positive flags ``(thresholds, d)`` of one image's detections of one class, and their scores, both
    in order of decreasing score (COCO's greedy match)."""
    order = np.argsort(-scores.numpy(), kind="mergesort")
    ious = ious.numpy()[order]  # (d, k)
    hits = np.zeros((len(thresholds), len(order)), dtype=bool)
    for t, threshold in enumerate(thresholds):
        claimed = np.zeros(ious.shape[1], dtype=bool)
        for d in range(len(order)):
            best, best_iou = -1, min(threshold, 1 - 1e-10)
            for g in range(ious.shape[1]):
                if not claimed[g] and ious[d, g] >= best_iou:
                    best, best_iou = g, ious[d, g]
            if best >= 0:
                claimed[best], hits[t, d] = True, True
    return hits, scores.numpy()[order]


def _precision_at_recalls(scores: np.ndarray, hits: np.ndarray, num_objects: int) -> np.ndarray:
    """Interpolated precision at `RECALLS` (zero beyond the highest recall reached)."""
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(hits[order]).astype(float)
    fp = np.cumsum(~hits[order]).astype(float)
    recall, precision = tp / num_objects, tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    index = np.searchsorted(recall, RECALLS, side="left")
    return np.array([precision[i] if i < len(precision) else 0.0 for i in index])


def average_precision_per_class(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]],
                                thresholds: np.ndarray | list[float] = (0.5,),
                                max_detections: int = 100) -> dict[int, np.ndarray]:
    """``{class: AP at each threshold}`` for every class that has at least one object."""
    _check(detections, targets)
    thresholds = np.asarray(thresholds, dtype=float)
    classes = sorted({int(c) for t in targets for c in t["class_labels"]})
    result = {}
    for c in classes:
        all_scores, all_hits, num_objects = [], [], 0
        for det, target in zip(detections, targets):
            keep = det["labels"] == c
            scores = det["scores"][keep].detach().cpu().double()
            top = torch.argsort(-scores, stable=True)[:max_detections]
            boxes = det["boxes"][keep][top].detach().cpu().double()
            objects = target["boxes"][target["class_labels"] == c].detach().cpu().double()
            num_objects += objects.shape[0]
            ious = box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(objects))
            hits, sorted_scores = _match_image(scores[top], ious, thresholds)
            all_scores.append(sorted_scores)
            all_hits.append(hits)
        scores, hits = np.concatenate(all_scores), np.concatenate(all_hits, axis=1)
        result[c] = np.array([_precision_at_recalls(scores, h, num_objects).mean() for h in hits])
    return result


def average_precision(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]],
                      iou_threshold: float = 0.5, max_detections: int = 100) -> float:
    """AP at one IoU threshold (0.5: AP50), averaged over the classes that have objects."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: expected a value in (0, 1], got {iou_threshold}")
    per_class = average_precision_per_class(detections, targets, [iou_threshold], max_detections)
    if not per_class:
        raise ValueError("targets: expected at least one object to score detections against")
    return float(np.mean([ap[0] for ap in per_class.values()]))


def coco_average_precision(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]],
                           max_detections: int = 100) -> float:
    """COCO's AP: the mean of AP over IoU thresholds 0.5:0.05:0.95 and over classes."""
    per_class = average_precision_per_class(detections, targets, COCO_THRESHOLDS, max_detections)
    if not per_class:
        raise ValueError("targets: expected at least one object to score detections against")
    return float(np.mean([ap.mean() for ap in per_class.values()]))
