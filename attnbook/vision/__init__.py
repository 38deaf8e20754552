"""Attention on images (chapter 5): the non-local block, channel and spatial attention, dual attention, and
non-local means, each a few lines on top of `attnbook.core`. Every block maps ``(batch, channels, height, width)``
to the same shape."""

from attnbook.vision.channel import CBAM, SpatialAttention, SqueezeExcitation
from attnbook.vision.dual import ChannelAttention, PositionAttention, released_channel_score
from attnbook.vision.nonlocal_block import (
    MODES,
    ConcatenationScore,
    NonLocalBlock,
    check_image,
    flatten_positions,
    unflatten_positions,
)

__all__ = [
    "CBAM", "MODES", "ChannelAttention", "ConcatenationScore", "NonLocalBlock", "PositionAttention",
    "SpatialAttention", "SqueezeExcitation", "check_image", "flatten_positions", "released_channel_score",
    "unflatten_positions",
]
