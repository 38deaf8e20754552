"""The one attention core that every chapter builds on.

Attention in three stages, one module each: score each key against the query (`scores`), normalise the scores
into weights (`normalize`, with the masks), and take the weighted average of the values (`attend`):

    attention(Q, K, V) = softmax(score(Q, K)) V,   score = Q Kᵀ / √d  by default.

`multihead` runs it in several heads; `edges` is its sparse form over an edge list. Masks are boolean and
**True means "may attend"**, the convention of `torch.nn.functional.scaled_dot_product_attention`. Everything is
importable from ``attnbook.core``.
"""

from attnbook.core.attend import attention
from attnbook.core.edges import edge_attention, segment_softmax
from attnbook.core.multihead import MultiHeadAttention
from attnbook.core.normalize import (
    NORMALIZERS,
    Normalize,
    NormalizeFn,
    causal_mask,
    check_mask,
    key_mask,
    masked_softmax,
    mean_normalized,
    padding_mask,
    resolve_normalize,
    unnormalized,
)
from attnbook.core.scores import (
    SCORES,
    AdditiveScore,
    GeneralScore,
    Score,
    ScoreFn,
    check_feature,
    cosine_score,
    dot_score,
    resolve_score,
    scaled_dot_score,
)

__all__ = [
    "NORMALIZERS", "SCORES", "AdditiveScore", "GeneralScore", "MultiHeadAttention", "Normalize", "NormalizeFn",
    "Score", "ScoreFn", "attention", "causal_mask", "check_feature", "check_mask", "cosine_score", "dot_score",
    "edge_attention", "key_mask", "masked_softmax", "mean_normalized", "padding_mask", "resolve_normalize",
    "resolve_score", "scaled_dot_score", "segment_softmax", "unnormalized",
]
