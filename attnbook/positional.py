"""Positional encodings: how a model built only from attention learns where each token sits.

Attention is permutation-equivariant, so position must be added to the input. Vaswani et al. (2017) use fixed
sinusoids, PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), chosen because
PE(pos + k) is a linear function of PE(pos) (a rotation of each (sin, cos) pair, `shift_matrix`); a learned
table of position vectors works about as well. Shape legend: ``(batch, n, d_model)``.

Chapter 9 adds positions that act inside attention instead of on the input: rotary embeddings (RoPE, Su et al.
2021), which turn each query and key pair of features by an angle proportional to its position so that their dot
product depends on the offset only, and ALiBi (Press et al. 2022), a score bias linear in the distance.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from attnbook.errors import ShapeError, check_min_ndim, check_ndim, check_tensor


def _check_dims(n: int, d_model: int) -> None:
    if n < 1:
        raise ValueError(f"n: expected a positive number of positions, got {n}")
    if d_model < 2 or d_model % 2:
        raise ValueError(f"d_model: expected an even size >= 2 (sin/cos pairs), got {d_model}")


def frequencies(d_model: int, base: float = 10000.0) -> Tensor:
    """The ``d_model / 2`` angular frequencies ω_i = base^(-2i/d_model) of the sinusoidal encoding."""
    _check_dims(1, d_model)
    return base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)


def sinusoidal_table(n: int, d_model: int, base: float = 10000.0) -> Tensor:
    """The ``(n, d_model)`` table PE with PE[pos, 2i] = sin(pos·ω_i) and PE[pos, 2i+1] = cos(pos·ω_i)."""
    _check_dims(n, d_model)
    angles = torch.arange(n, dtype=torch.float64)[:, None] * frequencies(d_model, base)[None, :]  # (n, d/2)
    table = torch.empty(n, d_model, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(angles), torch.cos(angles)
    return table.float()


def shift_matrix(k: int, d_model: int, base: float = 10000.0) -> Tensor:
    """The ``(d_model, d_model)`` matrix M_k with PE(pos + k) = M_k PE(pos) for every pos.

    Block-diagonal: each (sin, cos) pair turns by the angle k·ω_i, by the angle-addition formulas
    sin(a + b) = sin a cos b + cos a sin b and cos(a + b) = cos a cos b - sin a sin b. It depends on k only.
    """
    angles = k * frequencies(d_model, base)
    matrix = torch.zeros(d_model, d_model, dtype=torch.float64)
    cos, sin = torch.cos(angles), torch.sin(angles)
    even = torch.arange(0, d_model, 2)
    matrix[even, even], matrix[even, even + 1] = cos, sin
    matrix[even + 1, even], matrix[even + 1, even + 1] = -sin, cos
    return matrix


class _PositionalEncoding(nn.Module, ABC):
    """Shared entry check: add a ``(n, d_model)`` position table to ``x`` of shape ``(batch, n, d_model)``."""

    def __init__(self, d_model: int, max_len: int, dropout: float):
        super().__init__()
        _check_dims(max_len, d_model)
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)

    @abstractmethod
    def table(self, n: int) -> Tensor:
        """The ``(n, d_model)`` table of positions 0..n-1."""

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """``x`` holds positions ``offset`` … ``offset + n - 1`` (an offset lets a decoder add one token at a time)."""
        check_tensor("x", x)
        check_ndim("x", x, 3, "(batch, n, d_model)")
        if x.shape[-1] != self.d_model or offset + x.shape[1] > self.max_len:
            raise ShapeError(
                f"x: expected shape (batch, n <= {self.max_len - offset}, {self.d_model}) at offset {offset}, "
                f"got {tuple(x.shape)}"
            )
        return self.dropout(x + self.table(offset + x.shape[1])[offset:])


class SinusoidalPositionalEncoding(_PositionalEncoding):
    """Adds the fixed sinusoidal table (no parameters), then dropout, as in the Transformer paper."""

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0):
        super().__init__(d_model, max_len, dropout)
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)

    def table(self, n: int) -> Tensor:
        return self.pe[:n]


class LearnedPositionalEncoding(_PositionalEncoding):
    """Adds a learned ``(max_len, d_model)`` table of position vectors (BERT's and GPT's choice)."""

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0):
        super().__init__(d_model, max_len, dropout)
        self.embedding = nn.Parameter(torch.randn(max_len, d_model) / math.sqrt(d_model))

    def table(self, n: int) -> Tensor:
        return self.embedding[:n]


POSITIONAL = {"sinusoidal": SinusoidalPositionalEncoding, "learned": LearnedPositionalEncoding}


def positional_encoding(kind: str, d_model: int, max_len: int = 512, dropout: float = 0.0) -> nn.Module:
    """Build the positional encoding named ``kind`` ("sinusoidal" or "learned")."""
    if kind not in POSITIONAL:
        raise ValueError(f"kind: expected one of {sorted(POSITIONAL)}, got {kind!r}")
    return POSITIONAL[kind](d_model, max_len, dropout)


def apply_rotary(x: Tensor, positions: Tensor | None = None, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (RoPE) with interleaved pairs, as in RoFormer: x ``(..., n, d)`` → same shape.

    Features (x_2i, x_2i+1) of the token at position p turn by the angle p·ω_i, ω_i = base^(-2i/d); a query at p
    and a key at p' then score q·R(p' - p)k, a function of the offset alone. ``positions`` ``(n,)`` defaults to
    0..n-1.
    """
    check_tensor("x", x)
    check_min_ndim("x", x, 2, "(..., n, d)")
    n, d = x.shape[-2], x.shape[-1]
    _check_dims(n, d)
    if positions is None:
        positions = torch.arange(n, device=x.device)
    check_tensor("positions", positions)
    if positions.shape != (n,):
        raise ShapeError(f"positions: expected shape ({n},) (one per token of x), got {tuple(positions.shape)}")
    angles = positions.to(torch.float64)[:, None] * frequencies(d, base).to(x.device)  # (n, d/2)
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def rotate_half_split(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE in HuggingFace's half-split layout: pairs are (x_i, x_i+d/2); ``cos``/``sin`` as Llama's rotary gives.

    The same rotation as `apply_rotary` after permuting the features; ``cos``, ``sin`` broadcast against x.
    """
    first, second = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return x * cos + torch.cat((-second, first), dim=-1) * sin


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi's head slopes: the geometric sequence 2^(-8/h), 2^(-16/h), ... (interleaved when h is no power of 2)."""
    if num_heads < 1:
        raise ValueError(f"num_heads: expected a positive number of heads, got {num_heads}")

    def power_of_two(h: int) -> list[float]:
        start = 2 ** (-8 / h)
        return [start ** (i + 1) for i in range(h)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes)


def alibi_bias(num_heads: int, n_q: int, n_k: int) -> Tensor:
    """ALiBi's additive score bias ``(heads, n_q, n_k)``: −slope_h · distance (its absolute value), queries aligned to the last keys.

    Query i sits at position i + n_k - n_q (the end of the keys, as when decoding with a cache); add the bias to
    the scores (a ``score`` callable of the core) and give the model no other position information.
    """
    if n_q < 1 or n_k < 1:
        raise ValueError(f"n_q, n_k: expected positive lengths, got n_q={n_q}, n_k={n_k}")
    query_pos = torch.arange(n_k - n_q, n_k)[:, None]
    distance = (torch.arange(n_k)[None, :] - query_pos).abs()  # (n_q, n_k)
    return -alibi_slopes(num_heads)[:, None, None] * distance
