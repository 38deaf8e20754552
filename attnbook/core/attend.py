"""Stage 3 of attention: the weighted average, `attention(query, key, value)`, that every chapter calls.

    attention(Q, K, V) = normalize(score(Q, K)) V,   score = Q Kᵀ / √d and normalize = softmax by default.

Shape legend: ``(..., n_q, d)`` queries, ``(..., n_k, d)`` keys, ``(..., n_k, d_v)`` values, where ``...`` is any
batch shape (for multi-head attention ``(batch, heads)``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from attnbook.core.normalize import Normalize, check_mask, resolve_normalize
from attnbook.core.scores import Score, resolve_score
from attnbook.errors import ShapeError, broadcast_shapes, check_min_ndim, check_tensor


def attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    score: Score = "scaled_dot",
    dropout: float = 0.0,
    normalize: Normalize = "softmax",
) -> tuple[Tensor, Tensor]:
    """Attention as a weighted average: returns ``(output, weights)``.

    query ``(..., n_q, d)``, key ``(..., n_k, d)``, value ``(..., n_k, d_v)`` → output ``(..., n_q, d_v)`` and
    weights ``(..., n_q, n_k)``, whose rows sum to one (zero for a fully masked row). ``score`` is a name in
    `SCORES` or a callable such as `GeneralScore` / `AdditiveScore`; ``normalize`` a name in `NORMALIZERS`
    (``"softmax"``, ``"none"``, ``"mean"``) or a callable ``(scores, mask) -> weights``. ``dropout`` drops
    weights before the average (as `F.scaled_dot_product_attention` does); the returned weights are before it.
    """
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, tensor)
        check_min_ndim(name, tensor, 2, "(..., length, features)")
    if key.shape[-2] != value.shape[-2]:
        raise ShapeError(
            f"value: expected length n_k={key.shape[-2]} (the key's), got shape {tuple(value.shape)} "
            f"(key has shape {tuple(key.shape)})"
        )
    if isinstance(score, str) and query.shape[-1] != key.shape[-1]:
        raise ShapeError(
            f"key: expected feature size d={query.shape[-1]} (the query's) for score {score!r}, "
            f"got shape {tuple(key.shape)} (query has shape {tuple(query.shape)})"
        )
    batch = broadcast_shapes(
        ("query", "key", "value"), (query.shape[:-2], key.shape[:-2], value.shape[:-2])
    )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
    normalize_fn = resolve_normalize(normalize)
    scores = resolve_score(score)(query, key)
    if mask is not None:
        check_mask(mask, (*batch, query.shape[-2], key.shape[-2]))
    weights = normalize_fn(scores, mask)
    dropped = F.dropout(weights, p=dropout) if dropout > 0 else weights
    return dropped @ value, weights
