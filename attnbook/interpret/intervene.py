"""Editing attention inside a model, and measuring how far outputs and attentions differ (chapter 8).

Jain & Wallace (2019) asked whether other attention weights would give the same prediction; Wiegreffe &
Pinter (2019) asked how much attention differs anyway between runs that differ only in their seed. The tools:

* `edit_attention`: a context manager that passes one `attnbook.core.MultiHeadAttention`'s softmax weights
  through a function, through the module's ``normalize`` hook (the weighted average stays the core's);
* `permute_rows` / `uniform_rows`: two such functions — shuffle each query's weights over its visible keys,
  or spread them evenly;
* `total_variation` between output distributions, `js_divergence` between attention distributions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from attnbook.core import MultiHeadAttention, masked_softmax

Edit = Callable[[Tensor, Tensor | None], Tensor]


@contextmanager
def edit_attention(module: MultiHeadAttention, edit: Edit) -> Iterator[None]:
    """Within the block, ``module``'s weights are ``edit(softmax weights (batch, heads, n_q, n_k), mask)``."""
    if not isinstance(module, MultiHeadAttention):
        raise TypeError(f"module: expected an attnbook.core.MultiHeadAttention, got {type(module).__name__}")
    previous = module.normalize

    def normalize(scores: Tensor, mask: Tensor | None) -> Tensor:
        return edit(masked_softmax(scores, mask), mask)

    module.normalize = normalize
    try:
        yield
    finally:
        module.normalize = previous


def _visible(weights: Tensor, mask: Tensor | None) -> Tensor:
    return torch.ones_like(weights, dtype=torch.bool) if mask is None else mask.expand(weights.shape)


def permute_rows(generator: torch.Generator | None = None) -> Edit:
    """An edit that shuffles each query's weights over its visible keys (a new random order per row)."""

    def edit(weights: Tensor, mask: Tensor | None) -> Tensor:
        visible = _visible(weights, mask)
        n = weights.shape[-1]
        index = torch.arange(n, dtype=weights.dtype).expand(weights.shape)
        slots = torch.where(visible, index, index + n).argsort(-1)  # visible keys first, in order
        noise = torch.rand(weights.shape, generator=generator, dtype=weights.dtype)
        order = torch.where(visible, noise, noise + 2).argsort(-1)  # visible keys first, shuffled
        return torch.zeros_like(weights).scatter(-1, slots, weights.gather(-1, order))

    return edit


def uniform_rows(weights: Tensor, mask: Tensor | None) -> Tensor:
    """An edit that gives every visible key of a query the same weight."""
    visible = _visible(weights, mask).to(weights.dtype)
    return visible / visible.sum(-1, keepdim=True).clamp_min(1)


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """½ Σ|p − q| over the last dimension: how far two output distributions are (0 to 1)."""
    return 0.5 * (p - q).abs().sum(-1)


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Jensen–Shannon divergence (natural log, 0 to ln 2) over the last dimension of two distributions."""
    m = 0.5 * (p + q)

    def kl(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(a > 0, a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log()), 0.0).sum(-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)
