"""Variants of attention, each a choice inside `attnbook.core` (chapter 9).

What is scored: `window` (sliding windows), `swin` (shifted windows with a relative-position bias), `grouped`
(query heads sharing key/value heads), positions in scores (`attnbook.positional.apply_rotary`, `alibi_bias`).
How scores are normalised: `hard` (a sample instead of the softmax), `linear` (a kernel feature map).
How the sum is computed: `tiled` (blocks with an online softmax). Around attention: `pooling` (a learned query
reads a sequence, hierarchically) and `mixer` (token mixing by an MLP instead of attention).
"""

from attnbook.variants.grouped import GroupedQueryAttention, kv_cache_numbers
from attnbook.variants.hard import (
    gumbel_normalize,
    reinforce_surrogate,
    sample_normalize,
)
from attnbook.variants.linear import (
    elu_feature_map,
    linear_attention,
    quadratic_linear_attention,
    sum_normalized,
)
from attnbook.variants.mixer import MixingBlock, MLPMixer
from attnbook.variants.pooling import (
    AttentionPooling,
    HierarchicalAttention,
    PooledEncoder,
    SequenceClassifier,
)
from attnbook.variants.positions import PositionProbe
from attnbook.variants.swin import (
    RelativePositionScore,
    SwinBlock,
    relative_position_index,
    shifted_window_mask,
    window_merge,
    window_partition,
)
from attnbook.variants.tiled import online_softmax_step, tiled_attention
from attnbook.variants.window import sliding_window_attention, sliding_window_mask

__all__ = [
    "AttentionPooling",
    "GroupedQueryAttention",
    "HierarchicalAttention",
    "MLPMixer",
    "MixingBlock",
    "PooledEncoder",
    "PositionProbe",
    "RelativePositionScore",
    "SequenceClassifier",
    "SwinBlock",
    "elu_feature_map",
    "gumbel_normalize",
    "kv_cache_numbers",
    "linear_attention",
    "online_softmax_step",
    "quadratic_linear_attention",
    "reinforce_surrogate",
    "relative_position_index",
    "sample_normalize",
    "shifted_window_mask",
    "sliding_window_attention",
    "sliding_window_mask",
    "sum_normalized",
    "tiled_attention",
    "window_merge",
    "window_partition",
]
