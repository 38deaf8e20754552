"""Tiled attention with an online softmax: exact attention that never holds the ``(n_q, n_k)`` score matrix.

FlashAttention's idea (Dao et al. 2022), written in PyTorch for chapter 9: read the keys and values one block at
a time, keep for every query the running maximum m, the running normaliser l = Σ exp(s - m) and the running
weighted sum acc = Σ exp(s - m) v; when a new block raises the maximum to m', rescale l and acc by exp(m - m').
After the last block acc / l is the softmax-weighted average, exactly. Memory is O(n_q · block) instead of
O(n_q · n_k). (FlashAttention also tiles the queries, whose blocks are independent; here they are vectorised.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnbook.core import check_mask
from attnbook.errors import ShapeError, broadcast_shapes, check_min_ndim, check_tensor


def _check_inputs(query: Tensor, key: Tensor, value: Tensor) -> tuple[int, ...]:
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, tensor)
        check_min_ndim(name, tensor, 2, "(..., length, features)")
    if key.shape[-1] != query.shape[-1]:
        raise ShapeError(f"key: expected feature size d={query.shape[-1]} (the query's), got {tuple(key.shape)}")
    if value.shape[-2] != key.shape[-2]:
        raise ShapeError(f"value: expected length n_k={key.shape[-2]} (the key's), got {tuple(value.shape)}")
    return broadcast_shapes(("query", "key", "value"), (query.shape[:-2], key.shape[:-2], value.shape[:-2]))


def online_softmax_step(
    state: tuple[Tensor, Tensor, Tensor], scores: Tensor, value: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Fold one block of ``scores`` ``(..., n_q, b)`` (-inf = masked) and its ``value`` ``(..., b, d_v)`` into
    the running ``(maximum, normaliser, accumulator)``: the rescaling step of the online softmax."""
    maximum, normaliser, acc = state
    new_max = torch.maximum(maximum, scores.amax(-1, keepdim=True))
    safe = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))  # rows with no key yet
    rescale = torch.exp(maximum - safe)  # exp(m - m'): shrinks what was summed under the old maximum
    weights = torch.exp(scores - safe)  # (..., n_q, b), zero where masked
    return new_max, rescale * normaliser + weights.sum(-1, keepdim=True), rescale * acc + weights @ value


def tiled_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    block_size: int = 128,
) -> Tensor:
    """Exact scaled-dot-product attention computed block by block: query ``(..., n_q, d)``, key ``(..., n_k, d)``,
    value ``(..., n_k, d_v)`` → output ``(..., n_q, d_v)``, equal to `F.scaled_dot_product_attention`.

    ``mask`` is boolean (True = may attend), broadcastable to ``(..., n_q, n_k)``; ``is_causal`` lets query i see
    keys 0..i, as SDPA's flag does. A query that may attend no key gets zeros.
    """
    batch = _check_inputs(query, key, value)
    if block_size < 1:
        raise ValueError(f"block_size: expected a positive number of keys per block, got {block_size}")
    n_q, n_k = query.shape[-2], key.shape[-2]
    if mask is not None:
        check_mask(mask, (*batch, n_q, n_k))
    query = query / math.sqrt(query.shape[-1])
    shape = (*batch, n_q, 1)
    state = (
        query.new_full(shape, -math.inf),
        query.new_zeros(shape),
        query.new_zeros(*batch, n_q, value.shape[-1]),
    )
    rows = torch.arange(n_q, device=query.device)[:, None]
    for start in range(0, n_k, block_size):
        stop = min(start + block_size, n_k)
        scores = query @ key[..., start:stop, :].transpose(-2, -1)  # (..., n_q, b): one tile only
        if mask is not None:
            block = mask if mask.shape[-1] == 1 else mask[..., start:stop]
            scores = scores.masked_fill(~block, -math.inf)
        if is_causal:
            allowed = rows >= torch.arange(start, stop, device=query.device)[None, :]
            scores = scores.masked_fill(~allowed, -math.inf)
        state = online_softmax_step(state, scores, value[..., start:stop, :])
    _, normaliser, acc = state
    return acc / normaliser.clamp_min(torch.finfo(acc.dtype).tiny)  # an empty row: 0 / tiny = 0
