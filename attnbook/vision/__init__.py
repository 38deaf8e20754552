"""Attention on images (chapter 5): the non-local block, channel and spatial attention, dual attention, and
non-local means, each a few lines on top of `attnbook.core`; and the chapter's tasks and small CNNs. Every block
maps ``(batch, channels, height, width)`` to the same shape."""

from attnbook.vision.channel import CBAM, SpatialAttention, SqueezeExcitation
from attnbook.vision.denoise import nl_means, psnr
from attnbook.vision.dual import ChannelAttention, PositionAttention, released_channel_score
from attnbook.vision.nonlocal_block import (
    MODES,
    ConcatenationScore,
    NonLocalBlock,
    check_image,
    flatten_positions,
    unflatten_positions,
)
from attnbook.vision.tasks import (
    AttentionPool2d,
    PooledCNN,
    SourceBatch,
    TinyCNN,
    accuracy_by_distance,
    majority_task,
    pixel_accuracy,
    receptive_field,
    source_task,
)

__all__ = [
    "CBAM", "MODES", "AttentionPool2d", "ChannelAttention", "ConcatenationScore", "NonLocalBlock",
    "PooledCNN", "PositionAttention", "SourceBatch", "SpatialAttention", "SqueezeExcitation", "TinyCNN",
    "accuracy_by_distance", "check_image", "flatten_positions", "majority_task", "nl_means", "pixel_accuracy",
    "psnr", "receptive_field", "released_channel_score", "source_task", "unflatten_positions",
]
