"""Where position enters attention: one causal attention layer with four kinds of position (chapter 9).

Sinusoidal and learned positions are added to the input (chapter 3); rotary embeddings turn queries and keys
(`attnbook.positional.apply_rotary`); ALiBi adds a distance penalty to the scores (`alibi_bias`). The model
`PositionProbe` is otherwise identical for all four, so a length-extrapolation experiment — train at one
length, test at a longer one — compares the position choice alone. Shape legend: ``(batch, n)`` tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnbook.core import attention, causal_mask, scaled_dot_score
from attnbook.errors import ShapeError, check_ndim, check_tensor
from attnbook.positional import alibi_bias, apply_rotary, sinusoidal_table

POSITIONS = ("sinusoidal", "learned", "rope", "alibi")


class PositionProbe(nn.Module):
    """Embedding (+ position table) → one multi-head attention layer (+ position in the scores) → a linear
    read-out: tokens ``(batch, n)`` → logits ``(batch, n, vocab)``. Position i attends the earlier positions
    j < i only (its own token reaches the read-out through the residual; position 0 attends nothing)."""

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, positions: str, max_len: int = 512):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions: expected one of {POSITIONS}, got {positions!r}")
        if d_model % num_heads or (d_model // num_heads) % 2:
            raise ValueError(f"d_model: expected num_heads={num_heads} heads of an even size, got {d_model}")
        self.positions, self.num_heads, self.max_len = positions, num_heads, max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        if positions == "learned":
            self.table = nn.Parameter(torch.randn(max_len, d_model) / math.sqrt(d_model))
        elif positions == "sinusoidal":
            self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        check_tensor("tokens", tokens)
        check_ndim("tokens", tokens, 2, "(batch, n)")
        n = tokens.shape[1]
        if n > self.max_len:
            raise ShapeError(f"tokens: expected length <= max_len={self.max_len}, got shape {tuple(tokens.shape)}")
        x = self.embed(tokens)
        if self.positions in ("learned", "sinusoidal"):
            x = x + self.table[:n]
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        score = scaled_dot_score  # (batch, heads, n, head_dim) each
        if self.positions == "rope":
            q, k = apply_rotary(q), apply_rotary(k)
        elif self.positions == "alibi":
            bias = alibi_bias(self.num_heads, n, n).to(x.device)
            score = lambda a, b: scaled_dot_score(a, b) + bias
        out, _ = attention(q, k, v, mask=causal_mask(n, device=x.device).tril(-1), score=score)
        return self.out(out.transpose(1, 2).flatten(2) + x)
