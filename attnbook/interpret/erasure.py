"""Faithfulness by erasure: remove the tokens a method ranks highest and see how far the output moves.

An explanation that ranks tokens is faithful to the degree that the model's output depends on the tokens it
ranks first. `erasure_curve` removes the top-k tokens by a ranking, for several k, and returns how much the
output fell; `random_scores` gives the ranking to beat. What "remove" means is the caller's ``output(keep)``
(for the chapter's classifier: the token is hidden from every attention and from the pooling). Chapter 8
compares attention, gradient × input and integrated gradients this way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from attnbook.errors import ShapeError, check_tensor


def random_scores(candidates: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A random ranking ``(batch, n)`` of the candidate tokens (uniform scores in [0, 1))."""
    check_tensor("candidates", candidates)
    return torch.rand(candidates.shape, generator=generator)


def top_k_keep(scores: Tensor, k: int, candidates: Tensor) -> Tensor:
    """``(batch, n)`` boolean keep-mask with each row's k highest-scoring candidates removed (all, if fewer)."""
    if k < 0:
        raise ValueError(f"k: expected k >= 0, got {k}")
    ranked = scores.masked_fill(~candidates, float("-inf")).sort(dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(ranked)
    rank.scatter_(-1, ranked, torch.arange(scores.shape[-1]).expand_as(ranked))
    return ~((rank < k) & candidates)


def erasure_curve(output: Callable[[Tensor], Tensor], scores: Tensor, ks: Sequence[int],
                  candidates: Tensor | None = None) -> Tensor:
    """``output(all kept) − output(top-k removed)`` for each k: ``(len(ks), batch)``.

    output: maps a boolean keep-mask ``(batch, n)`` to ``(batch,)`` scores; scores: ``(batch, n)``, higher =
    removed first; candidates: ``(batch, n)`` boolean, the tokens that may be removed (default all).
    """
    check_tensor("scores", scores)
    if scores.dim() != 2:
        raise ShapeError(f"scores: expected (batch, n), got {tuple(scores.shape)}")
    if candidates is None:
        candidates = torch.ones_like(scores, dtype=torch.bool)
    if tuple(candidates.shape) != tuple(scores.shape):
        raise ShapeError(f"candidates: expected the shape of scores {tuple(scores.shape)}, got {tuple(candidates.shape)}")
    if len(ks) == 0:
        raise ValueError("ks: expected at least one k")
    candidates = candidates.bool()
    with torch.no_grad():
        full = output(torch.ones_like(candidates))
        if tuple(full.shape) != (scores.shape[0],):
            raise ShapeError(f"output: expected (batch,) = ({scores.shape[0]},) scores, got {tuple(full.shape)}")
        return torch.stack([full - output(top_k_keep(scores, k, candidates)) for k in ks])
