"""Stage 2 of attention: turning scores into weights, and the boolean masks that say where weights may go.

Masks are boolean and **True means "may attend"** (the convention of `F.scaled_dot_product_attention`). The
normalisation is a choice (chapter 9): the softmax of the Transformer; none at all (the memory network's linear
start); or division by the number of keys (the non-local block's dot-product and concatenation forms,
C(x) = N). Every choice gives masked keys exactly zero weight and a fully masked row zeros, never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, Union

import torch
from torch import Tensor

from attnbook.errors import DTypeError, ShapeError, check_ndim, check_tensor, resolve_choice

NormalizeFn = Callable[[Tensor, Optional[Tensor]], Tensor]
Normalize = Union[str, NormalizeFn]


def check_mask(mask: object, target: tuple[int, ...], target_name: str = "(..., n_q, n_k)") -> Tensor:
    """Check that ``mask`` is a boolean tensor broadcastable to ``target``; return it."""
    mask = check_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise DTypeError(f"mask: expected dtype torch.bool (True = may attend), got {mask.dtype}")
    try:
        shape = torch.broadcast_shapes(mask.shape, torch.Size(target))
    except RuntimeError:
        shape = None
    if shape != torch.Size(target):
        raise ShapeError(f"mask: expected a shape broadcastable to {target_name} {target}, got {tuple(mask.shape)}")
    return mask


def masked_softmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax over the last axis that gives masked keys exactly zero weight.

    ``mask`` is boolean, broadcastable to ``scores``, True where a key may be attended. A row whose keys are
    all masked gets all-zero weights, never NaN, in the forward and the backward pass: masked scores are
    replaced by the dtype's lowest finite value (not -inf, whose softmax is 0/0) and zeroed after.
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    mask = check_mask(mask, tuple(scores.shape), "scores")
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1).masked_fill(~mask, 0.0)


def unnormalized(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """The scores themselves as weights, zero where masked: no normalisation (the memory network's linear start)."""
    if mask is None:
        return scores
    return scores.masked_fill(~check_mask(mask, tuple(scores.shape), "scores"), 0.0)


def mean_normalized(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scores divided by the number of keys each query may attend, C(x) = N (Wang et al. 2018's dot product)."""
    if mask is None:
        return scores / scores.shape[-1]
    mask = check_mask(mask, tuple(scores.shape), "scores")
    count = mask.expand(scores.shape).sum(-1, keepdim=True).clamp_min(1)
    return scores.masked_fill(~mask, 0.0) / count


NORMALIZERS: dict[str, NormalizeFn] = {"softmax": masked_softmax, "none": unnormalized, "mean": mean_normalized}


def resolve_normalize(normalize: Normalize) -> NormalizeFn:
    """Turn a name in `NORMALIZERS` or a callable ``(scores, mask) -> weights`` into a callable."""
    return resolve_choice("normalize", normalize, NORMALIZERS, "(scores, mask) -> weights")


def causal_mask(n_q: int, n_k: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Boolean ``(n_q, n_k)`` mask in which query i may attend keys 0..i (GPT's left-to-right reading)."""
    n_k = n_q if n_k is None else n_k
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril(diagonal=n_k - n_q)


def padding_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Boolean ``(batch, max_len)`` mask, True on the first ``lengths[b]`` positions (the real tokens)."""
    lengths = check_tensor("lengths", lengths)
    check_ndim("lengths", lengths, 1, "(batch,)")
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


def key_mask(valid: Tensor) -> Tensor:
    """Turn a ``(batch, n_k)`` "is a real token" mask into ``(batch, 1, 1, n_k)`` for multi-head attention."""
    valid = check_tensor("valid", valid)
    check_ndim("valid", valid, 2, "(batch, n_k)")
    return valid[:, None, None, :]
