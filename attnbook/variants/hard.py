"""Hard attention: read exactly one value, sampled from the attention distribution (Xu et al. 2015) (chapter 9).

A choice of normalisation: instead of the softmax's weights, a one-hot sample from them. Sampling has no
gradient, so two estimators stand in for it. The straight-through Gumbel-softmax (Jang et al. 2017) takes
argmax(s + Gumbel noise) — an exact sample — in the forward pass and the gradient of softmax((s + noise)/τ) in
the backward pass: low variance, biased. REINFORCE (Williams 1992) weights ∇ log p(chosen) by the loss minus a
baseline: unbiased, noisier. Both plug into `attnbook.core.attention` as ``normalize=`` callables.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbook.core import NormalizeFn, check_mask, masked_softmax


def _fill_masked(scores: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return scores
    return scores.masked_fill(~check_mask(mask, tuple(scores.shape), "scores"), torch.finfo(scores.dtype).min)


def gumbel_normalize(tau: float = 1.0, hard: bool = True) -> NormalizeFn:
    """A ``normalize`` for the core: `F.gumbel_softmax` of the scores (one-hot forward, soft gradient if ``hard``)."""
    if tau <= 0:
        raise ValueError(f"tau: expected a positive temperature, got {tau}")

    def normalize(scores: Tensor, mask: Tensor | None = None) -> Tensor:
        weights = F.gumbel_softmax(_fill_masked(scores, mask), tau=tau, hard=hard, dim=-1)
        return weights if mask is None else weights * mask

    return normalize


def sample_normalize(generator: torch.Generator | None = None) -> NormalizeFn:
    """A ``normalize`` for the core: a one-hot sample from softmax(scores); no gradient flows through it."""

    def normalize(scores: Tensor, mask: Tensor | None = None) -> Tensor:
        probs = masked_softmax(scores.detach(), mask)
        flat = probs.reshape(-1, probs.shape[-1])
        empty = flat.sum(-1) == 0  # a fully masked row samples nothing
        choice = torch.multinomial(flat.masked_fill(empty[:, None], 1.0), 1, generator=generator)
        one_hot = torch.zeros_like(flat).scatter_(-1, choice, 1.0).masked_fill(empty[:, None], 0.0)
        return one_hot.view(probs.shape)

    return normalize


def reinforce_surrogate(
    scores: Tensor, choice: Tensor, loss: Tensor, baseline: Tensor | float = 0.0, mask: Tensor | None = None
) -> Tensor:
    """The REINFORCE surrogate whose gradient is (loss - baseline) · ∇ log p(choice), averaged over samples.

    scores ``(..., n_k)``, the one-hot ``choice`` ``(..., n_k)`` that was sampled, per-sample ``loss`` ``(...)``
    (treated as a constant) and a ``baseline`` (a number or ``(...)``) that lowers the variance.
    """
    if choice.shape != scores.shape:
        raise ValueError(f"choice: expected a one-hot of shape {tuple(scores.shape)}, got {tuple(choice.shape)}")
    log_p = (torch.log_softmax(_fill_masked(scores, mask), dim=-1) * choice).sum(-1)
    return ((loss - baseline).detach() * log_p).mean()
