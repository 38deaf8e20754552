"""Attention over an edge list: the sparse form of `attention` for graphs (chapter 7) and sparse patterns (chapter 9).

Instead of an ``(n_q, n_k)`` score matrix with a mask, there is one score per edge ``j → i`` and the target
``index`` i of each edge. Normalising over the edges that share a target is the masked softmax of a row; summing
the weighted values into their targets is the weighted average. A target with no incoming edge gets zeros, as a
fully masked row does in the dense core.

Shapes: ``scores (E, ...)``, ``values (E, ..., d)`` (already gathered at each edge's source), ``index (E,)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbook.errors import DTypeError, ShapeError, check_tensor


def _check_index(index: object, num_edges: int, num_nodes: int) -> Tensor:
    index = check_tensor("index", index)
    if index.dtype != torch.long:
        raise DTypeError(f"index: expected dtype torch.int64 (target node of each edge), got {index.dtype}")
    if index.shape != (num_edges,):
        raise ShapeError(f"index: expected shape ({num_edges},) (one target per edge), got {tuple(index.shape)}")
    if num_edges and (int(index.min()) < 0 or int(index.max()) >= num_nodes):
        raise ValueError(f"index: expected targets in [0, {num_nodes}), got {int(index.min())}..{int(index.max())}")
    return index


def segment_softmax(scores: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Softmax of ``scores`` (E, ...) over the edges that share a target ``index`` (E,): (E, ...).

    The per-target maximum is subtracted first (as the dense softmax does), so large scores do not overflow.
    """
    check_tensor("scores", scores)
    _check_index(index, scores.shape[0], num_nodes)
    shape = (num_nodes, *scores.shape[1:])
    expanded = index.view(-1, *[1] * (scores.ndim - 1)).expand_as(scores)
    maximum = torch.full(shape, -torch.inf, dtype=scores.dtype, device=scores.device)
    maximum = maximum.scatter_reduce(0, expanded, scores.detach(), reduce="amax", include_self=True)
    exp = (scores - maximum[index]).exp()
    total = torch.zeros(shape, dtype=scores.dtype, device=scores.device).index_add_(0, index, exp)
    return exp / total[index]


def edge_attention(
    scores: Tensor, values: Tensor, index: Tensor, num_nodes: int, dropout: float = 0.0, training: bool = True
) -> tuple[Tensor, Tensor]:
    """Attention over an edge list: returns ``(output (num_nodes, ..., d), weights (E, ...))``.

    ``weights`` are `segment_softmax` of ``scores`` over each target's incoming edges; the output of target i is
    Σ_{edges j→i} weight · value. ``dropout`` (when ``training``) drops weights before the sum, as the dense
    core does; the returned weights are the distribution before it.
    """
    check_tensor("values", values)
    if values.shape[: scores.ndim] != scores.shape:
        raise ShapeError(
            f"values: expected shape ({', '.join(map(str, scores.shape))}, d) to match scores, "
            f"got {tuple(values.shape)}"
        )
    weights = segment_softmax(scores, index, num_nodes)
    dropped = F.dropout(weights, dropout, training=training) if dropout > 0 else weights
    messages = dropped.unsqueeze(-1) * values  # (E, ..., d)
    out = values.new_zeros(num_nodes, *values.shape[1:]).index_add_(0, index, messages)
    return out, weights
