"""Stage 1 of attention: scoring functions.

Each maps query ``(..., n_q, d_q)`` and key ``(..., n_k, d_k)`` to scores ``(..., n_q, n_k)``. Chapter 2 compares
them; later chapters pass one to `attnbook.core.attention` by name or as a module (`GeneralScore`,
`AdditiveScore`, the GAT score, the non-local block's pairwise functions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.errors import ShapeError, resolve_choice

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Score = Union[str, ScoreFn]


def dot_score(query: Tensor, key: Tensor) -> Tensor:
    """Dot product q·k (Luong et al. 2015): cheap, but its spread grows with the feature size d."""
    return query @ key.transpose(-2, -1)


def scaled_dot_score(query: Tensor, key: Tensor) -> Tensor:
    """Scaled dot product q·k / √d (Vaswani et al. 2017): unit variance for unit-variance inputs."""
    return dot_score(query, key) / math.sqrt(query.shape[-1])


def cosine_score(query: Tensor, key: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine similarity in [-1, 1]: the angle only; usually multiplied by a learned or fixed scale."""
    return F.normalize(query, dim=-1, eps=eps) @ F.normalize(key, dim=-1, eps=eps).transpose(-2, -1)


class GeneralScore(nn.Module):
    """Bilinear ("general") score qᵀ W k (Luong et al. 2015): lets queries and keys live in different spaces."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.query_dim, self.key_dim = query_dim, key_dim
        self.weight = nn.Parameter(torch.empty(query_dim, key_dim))
        nn.init.normal_(self.weight, std=(query_dim * key_dim) ** -0.5)  # unit-variance scores

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        check_feature("query", query, self.query_dim, "GeneralScore.query_dim")
        check_feature("key", key, self.key_dim, "GeneralScore.key_dim")
        return (query @ self.weight) @ key.transpose(-2, -1)


class AdditiveScore(nn.Module):
    """Additive (MLP) score vᵀ tanh(W_q q + W_k k) of Bahdanau et al. (2015)."""

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int):
        super().__init__()
        self.query_dim, self.key_dim = query_dim, key_dim
        self.w_query = nn.Linear(query_dim, hidden_dim, bias=False)
        self.w_key = nn.Linear(key_dim, hidden_dim, bias=False)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        check_feature("query", query, self.query_dim, "AdditiveScore.query_dim")
        check_feature("key", key, self.key_dim, "AdditiveScore.key_dim")
        # (..., n_q, 1, h) + (..., 1, n_k, h) -> (..., n_q, n_k, h) -> (..., n_q, n_k)
        hidden = torch.tanh(self.w_query(query).unsqueeze(-2) + self.w_key(key).unsqueeze(-3))
        return self.v(hidden).squeeze(-1)


SCORES: dict[str, ScoreFn] = {"dot": dot_score, "scaled_dot": scaled_dot_score, "cosine": cosine_score}


def resolve_score(score: Score) -> ScoreFn:
    """Turn a score name from `SCORES` or a callable ``(query, key) -> scores`` into a callable."""
    return resolve_choice("score", score, SCORES, "(query, key) -> scores")


def check_feature(name: str, tensor: Tensor, expected: int, what: str) -> None:
    """Raise `ShapeError` unless the last axis of ``tensor`` has size ``expected`` (``what`` says why)."""
    if tensor.shape[-1] != expected:
        raise ShapeError(f"{name}: expected feature size {expected} ({what}), got shape {tuple(tensor.shape)}")
