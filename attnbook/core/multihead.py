"""Multi-head attention: several attentions side by side, each in its own learned subspace (Vaswani et al. 2017).

Used by the Transformer (chapter 3), BERT (chapter 4) and the vision models (chapters 6 and 8); every head is
computed by `attnbook.core.attention`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnbook.core.attend import attention
from attnbook.core.normalize import Normalize, check_mask
from attnbook.core.scores import Score, check_feature
from attnbook.errors import ShapeError, check_ndim, check_tensor


class MultiHeadAttention(nn.Module):
    """Multi-head attention over batch-first inputs, computed by `attention` in every head.

    query ``(batch, n_q, embed_dim)``, key ``(batch, n_k, kdim)``, value ``(batch, n_k, vdim)`` → output
    ``(batch, n_q, embed_dim)`` and weights ``(batch, heads, n_q, n_k)``. ``mask`` is boolean, broadcastable
    to ``(batch, heads, n_q, n_k)``, True = may attend. Variants change ``score`` (a name or a callable on
    per-head queries and keys) and nothing else, as labml's ``get_scores`` hook does; ``normalize`` (a name or
    a callable ``(scores, mask) -> weights``) is the same kind of hook for the weights (chapter 8 edits them).
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
        normalize: Normalize = "softmax",
    ):
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim: expected a multiple of num_heads={num_heads}, got embed_dim={embed_dim}"
            )
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout, self.score, self.normalize = dropout, score, normalize
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
            check_feature(name, tensor, dim, "embed_dim" if name == "query" else ("kdim" if name == "key" else "vdim"))
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
        return self.attend(query, *self.project_kv(key, value), mask=mask)

    def project_kv(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values in heads, ``(batch, heads, n_k, head_dim)`` each: what a decoder caches between steps."""
        return self.split_heads(self.k_proj(key)), self.split_heads(self.v_proj(value))

    def attend(self, query: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`forward` with keys and values already projected by `project_kv` (and perhaps cached)."""
        q = self.split_heads(self.q_proj(query))  # (B, H, n_q, hd)
        out, weights = attention(q, k, v, mask=mask, score=self.score,
                                 dropout=self.dropout if self.training else 0.0, normalize=self.normalize)
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
