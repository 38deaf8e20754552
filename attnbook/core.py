"""The one attention core that every chapter builds on.

Attention in three stages: score each key against the query, normalise the scores into a distribution
(a masked softmax), and take the weighted average of the values:

    attention(Q, K, V) = softmax(score(Q, K)) V,   score = Q Kᵀ / √d  by default.

Shape legend: ``(..., n_q, d)`` queries, ``(..., n_k, d)`` keys, ``(..., n_k, d_v)`` values, where ``...`` is
any batch shape (for multi-head attention ``(batch, heads)``). Masks are boolean and **True means "may
attend"**, the convention of `torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.errors import DTypeError, ShapeError, broadcast_shapes, check_min_ndim, check_ndim, check_tensor

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Score = Union[str, ScoreFn]

# ---------------------------------------------------------------------------------------------------------
# Stage 1: scoring functions. Each maps query (..., n_q, d_q) and key (..., n_k, d_k) to scores (..., n_q, n_k).


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
        _check_feature("query", query, self.query_dim, "GeneralScore.query_dim")
        _check_feature("key", key, self.key_dim, "GeneralScore.key_dim")
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
        _check_feature("query", query, self.query_dim, "AdditiveScore.query_dim")
        _check_feature("key", key, self.key_dim, "AdditiveScore.key_dim")
        # (..., n_q, 1, h) + (..., 1, n_k, h) -> (..., n_q, n_k, h) -> (..., n_q, n_k)
        hidden = torch.tanh(self.w_query(query).unsqueeze(-2) + self.w_key(key).unsqueeze(-3))
        return self.v(hidden).squeeze(-1)


SCORES: dict[str, ScoreFn] = {"dot": dot_score, "scaled_dot": scaled_dot_score, "cosine": cosine_score}


def resolve_score(score: Score) -> ScoreFn:
    """Turn a score name from `SCORES` or a callable ``(query, key) -> scores`` into a callable."""
    if isinstance(score, str):
        if score not in SCORES:
            raise ValueError(f"score: expected one of {sorted(SCORES)} or a callable, got {score!r}")
        return SCORES[score]
    if not callable(score):
        raise TypeError(f"score: expected a name or a callable (query, key) -> scores, got {type(score).__name__}")
    return score


# ---------------------------------------------------------------------------------------------------------
# Stage 2: normalisation.


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


# ---------------------------------------------------------------------------------------------------------
# Stage 3: the weighted average.


def attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    score: Score = "scaled_dot",
    dropout: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Attention as a weighted average: returns ``(output, weights)``.

    query ``(..., n_q, d)``, key ``(..., n_k, d)``, value ``(..., n_k, d_v)`` → output ``(..., n_q, d_v)`` and
    weights ``(..., n_q, n_k)``, whose rows sum to one (zero for a fully masked row). ``score`` is a name in
    `SCORES` or a callable such as `GeneralScore` / `AdditiveScore`. ``dropout`` drops weights before the
    average (as `F.scaled_dot_product_attention` does); the returned weights are the distribution before it.
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
    scores = resolve_score(score)(query, key)
    if mask is not None:
        check_mask(mask, (*batch, query.shape[-2], key.shape[-2]))
    weights = masked_softmax(scores, mask)
    dropped = F.dropout(weights, p=dropout) if dropout > 0 else weights
    return dropped @ value, weights


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


# ---------------------------------------------------------------------------------------------------------
# Multi-head attention.


class MultiHeadAttention(nn.Module):
    """Multi-head attention over batch-first inputs, computed by `attention` in every head.

    query ``(batch, n_q, embed_dim)``, key ``(batch, n_k, kdim)``, value ``(batch, n_k, vdim)`` → output
    ``(batch, n_q, embed_dim)`` and weights ``(batch, heads, n_q, n_k)``. ``mask`` is boolean, broadcastable
    to ``(batch, heads, n_q, n_k)``, True = may attend. Variants change ``score`` (a name or a callable on
    per-head queries and keys) and nothing else, as labml's ``get_scores`` hook does.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        bias: bool = True,
        dropout: float = 0.0,
        *,
        kdim: int | None = None,
        vdim: int | None = None,
        score: Score = "scaled_dot",
    ):
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim: expected a multiple of num_heads={num_heads}, got embed_dim={embed_dim}"
            )
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout, self.score = dropout, score
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """(batch, n, embed_dim) → (batch, heads, n, head_dim)."""
        batch, n, _ = x.shape
        return x.view(batch, n, self.num_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, x: Tensor) -> Tensor:
        """(batch, heads, n, head_dim) → (batch, n, embed_dim)."""
        batch, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(batch, n, self.embed_dim)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        for name, tensor, dim in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            check_tensor(name, tensor)
            check_ndim(name, tensor, 3, "(batch, length, features)")
            _check_feature(name, tensor, dim, "embed_dim" if name == "query" else ("kdim" if name == "key" else "vdim"))
        if not query.shape[0] == key.shape[0] == value.shape[0]:
            raise ShapeError(
                f"batch sizes differ: query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        if key.shape[1] != value.shape[1]:
            raise ShapeError(
                f"value: expected length n_k={key.shape[1]} (the key's), got shape {tuple(value.shape)}"
            )
        if mask is not None:
            check_mask(mask, (query.shape[0], self.num_heads, query.shape[1], key.shape[1]),
                       "(batch, heads, n_q, n_k)")
        q = self.split_heads(self.q_proj(query))  # (B, H, n_q, hd)
        k = self.split_heads(self.k_proj(key))  # (B, H, n_k, hd)
        v = self.split_heads(self.v_proj(value))  # (B, H, n_k, hd)
        out, weights = attention(q, k, v, mask=mask, score=self.score, dropout=self.dropout if self.training else 0.0)
        return self.out_proj(self.merge_heads(out)), weights

    @classmethod
    def from_reference(cls, module: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a `torch.nn.MultiheadAttention` (use it with ``batch_first=True`` to compare)."""
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"module: expected torch.nn.MultiheadAttention, got {type(module).__name__}")
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("module: add_bias_kv and add_zero_attn have no counterpart here")
        bias = module.in_proj_bias is not None
        new = cls(module.embed_dim, module.num_heads, bias=bias, dropout=module.dropout,
                  kdim=module.kdim, vdim=module.vdim)
        if module._qkv_same_embed_dim:
            weights = module.in_proj_weight.chunk(3)
        else:
            weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
        biases = module.in_proj_bias.chunk(3) if bias else (None, None, None)
        with torch.no_grad():
            for proj, w, b in zip((new.q_proj, new.k_proj, new.v_proj), weights, biases):
                proj.weight.copy_(w)
                if b is not None:
                    proj.bias.copy_(b)
            new.out_proj.weight.copy_(module.out_proj.weight)
            if bias:
                new.out_proj.bias.copy_(module.out_proj.bias)
        return new.to(module.out_proj.weight.dtype)


def _check_feature(name: str, tensor: Tensor, expected: int, what: str) -> None:
    if tensor.shape[-1] != expected:
        raise ShapeError(f"{name}: expected feature size {expected} ({what}), got shape {tuple(tensor.shape)}")
