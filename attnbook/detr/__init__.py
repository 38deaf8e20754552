"""DETR for chapter 6: detection as set prediction with a Transformer (Carion et al. 2020).

`boxes` (box formats, IoU, generalised IoU), `matching` (the Hungarian matching and the set loss), `layers`
(encoder and decoder layers with positions on queries and keys), `model` (the DETR model and its copy of
HuggingFace's), `metrics` (average precision as COCO computes it), `train` (the chapter's training recipe).
"""

from attnbook.detr.boxes import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
)
from attnbook.detr.layers import (
    DetrDecoderLayer,
    DetrEncoderLayer,
    sine_position_embedding,
)
from attnbook.detr.matching import hungarian_match, matching_cost, set_prediction_loss
from attnbook.detr.metrics import (
    average_precision,
    average_precision_per_class,
    coco_average_precision,
    postprocess,
)
from attnbook.detr.model import DETR, BoxHead, ConvBackbone

__all__ = [
    "DETR", "BoxHead", "ConvBackbone", "DetrDecoderLayer", "DetrEncoderLayer", "average_precision",
    "average_precision_per_class", "box_area", "box_cxcywh_to_xyxy", "box_iou", "box_xyxy_to_cxcywh",
    "coco_average_precision", "generalized_box_iou", "hungarian_match", "matching_cost", "postprocess",
    "set_prediction_loss", "sine_position_embedding",
]
