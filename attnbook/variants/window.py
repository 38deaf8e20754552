"""Local attention: each query sees only the keys within a window of its position (chapter 9).

A window is a choice of *which* scores exist, so it is a boolean mask through the core: `sliding_window_mask`
with `attnbook.core.attention` is local attention, at the full O(n²) cost. `sliding_window_attention` computes
the same thing in O(n · window): the queries are cut into chunks of ``window`` positions and each chunk attends
only to its own and its neighbours' keys — still through the core, with the same mask on the small tiles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbook.core import attention
from attnbook.errors import ShapeError, check_min_ndim, check_tensor


def sliding_window_mask(n: int, window: int, causal: bool = False, device: torch.device | str | None = None) -> Tensor:
    """Boolean ``(n, n)`` mask, True where ``abs(i - j) <= window`` (and j <= i when ``causal``)."""
    if n < 1 or window < 0:
        raise ValueError(f"n, window: expected n >= 1 and window >= 0, got n={n}, window={window}")
    offset = torch.arange(n, device=device)[None, :] - torch.arange(n, device=device)[:, None]  # j - i
    allowed = offset.abs() <= window
    return allowed & (offset <= 0) if causal else allowed


def sliding_window_attention(query: Tensor, key: Tensor, value: Tensor, window: int, causal: bool = False) -> Tensor:
    """Local attention in O(n · window): query, key ``(..., n, d)``, value ``(..., n, d_v)`` → ``(..., n, d_v)``,
    equal to the core's attention with ``mask=sliding_window_mask(n, window, causal)``."""
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, tensor)
        check_min_ndim(name, tensor, 2, "(..., n, features)")
    n = query.shape[-2]
    if key.shape[-2] != n or value.shape[-2] != n:
        raise ShapeError(f"key, value: expected length n={n} (the query's), got {tuple(key.shape)}, {tuple(value.shape)}")
    if window < 1:
        raise ValueError(f"window: expected a window of at least 1 position, got {window}")
    chunks = -(-n // window)
    pad = chunks * window - n

    def neighbours(x: Tensor) -> Tensor:  # (..., n, f) -> (..., chunks, 3·window, f): previous, own, next chunk
        x = F.pad(x, (0, 0, window, pad + window)).unfold(-2, 3 * window, window)  # (..., chunks, f, 3w)
        return x.transpose(-2, -1)

    q = F.pad(query, (0, 0, 0, pad)).unflatten(-2, (chunks, window))  # (..., chunks, w, d)
    positions = F.pad(torch.arange(n, device=query.device), (window, pad + window), value=-1)
    key_pos = positions.unfold(0, 3 * window, window)  # (chunks, 3w); -1 marks padding
    query_pos = torch.arange(chunks * window, device=query.device).view(chunks, window)
    offset = key_pos[:, None, :] - query_pos[:, :, None]  # (chunks, w, 3w): j - i
    mask = (key_pos[:, None, :] >= 0) & (offset.abs() <= window)  # the sliding window, on the tiles
    if causal:
        mask = mask & (offset <= 0)
    out, _ = attention(q, neighbours(key), neighbours(value), mask=mask)
    return out.flatten(-3, -2)[..., :n, :]
