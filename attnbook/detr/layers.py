"""DETR's Transformer layers (chapter 6): the chapter-3 layers with positions added to queries and keys only.

DETR never adds positions to the token stream. Every attention instead gets them beside its input: in the
encoder the 2-D sine positions of the feature-map cells go into queries and keys, in the decoder the learned
object queries go into queries (and into keys of the self-attention) and the cell positions into the keys of
the cross-attention; values carry content only. The layers are post-norm, as in the paper and HuggingFace's
`DetrEncoderLayer` / `DetrDecoderLayer`. They subclass `attnbook.transformer.EncoderLayer` / `DecoderLayer`,
so they own the same attention (`attnbook.core.MultiHeadAttention`), feed-forward network and norms and
change only where positions enter. Shape legend: ``(batch, n, d_model)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnbook.errors import ShapeError
from attnbook.positional import frequencies
from attnbook.transformer import DecoderLayer, EncoderLayer


def sine_position_embedding(height: int, width: int, d_model: int, temperature: float = 10000.0,
                            scale: float = 2 * math.pi) -> Tensor:
    """The ``(height · width, d_model)`` positions of a feature map's cells, row by row (DETR's "sine").

    Row and column are normalised to (0, ``scale``] (cell index + 1 over the map's size), and each gets
    ``d_model / 2`` features: the chapter-3 sinusoids sin(p·ω_i), cos(p·ω_i) at frequencies
    ω_i = temperature^(−2i/(d_model/2)). The row's features come first, then the column's.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height, width: expected a feature map of at least 1x1, got {height}x{width}")
    if d_model % 4:
        raise ValueError(f"d_model: expected a multiple of 4 (sin/cos pairs for rows and columns), got {d_model}")
    omega = frequencies(d_model // 2, temperature)  # (d_model / 4,)

    def encode(n: int) -> Tensor:  # (n, d_model / 2): sin and cos interleaved, as in chapter 3
        position = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1e-6) * scale
        angles = position[:, None] * omega[None, :]
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)

    rows, cols = encode(height), encode(width)
    table = torch.cat([rows[:, None, :].expand(height, width, -1), cols[None, :, :].expand(height, width, -1)], -1)
    return table.reshape(height * width, d_model).float()


def _check_positions(name: str, pos: Tensor, x: Tensor) -> None:
    if pos.shape[-2:] != x.shape[-2:] or pos.dim() not in (2, 3):
        raise ShapeError(f"{name}: expected shape (batch, {x.shape[1]}, {x.shape[2]}) or ({x.shape[1]}, "
                         f"{x.shape[2]}), got {tuple(pos.shape)}")


class DetrEncoderLayer(EncoderLayer):
    """Post-norm encoder layer whose self-attention reads queries and keys x + pos and values x.

    ``forward(x, pos, mask=None, need_weights=False)``: x ``(batch, n, d_model)``, pos ``(n, d_model)`` or
    ``(batch, n, d_model)``. Returns x, or ``(x, weights (batch, heads, n, n))``.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", layer_norm_eps: float = 1e-5):
        super().__init__(d_model, num_heads, dim_feedforward, dropout, activation, False, layer_norm_eps)

    def forward(self, x: Tensor, pos: Tensor, mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        _check_positions("pos", pos, x)
        query_key = x + pos
        attended, weights = self.self_attn(query_key, query_key, x, mask=mask)
        x = self.norm1(x + self.dropout1(attended))
        x = self.norm2(x + self.dropout2(self._ff_block(x)))
        return (x, weights) if need_weights else x


class DetrDecoderLayer(DecoderLayer):
    """Post-norm decoder layer: self-attention among the object queries, cross-attention to the image.

    ``forward(x, memory, query_pos, memory_pos, need_weights=False)``: x and query_pos ``(batch, queries,
    d_model)``; memory ``(batch, n, d_model)``, memory_pos ``(n, d_model)`` or ``(batch, n, d_model)``.
    Returns x, or ``(x, self_weights (batch, heads, queries, queries), cross_weights (batch, heads, queries,
    n))``.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", layer_norm_eps: float = 1e-5):
        super().__init__(d_model, num_heads, dim_feedforward, dropout, activation, False, layer_norm_eps)

    def forward(self, x: Tensor, memory: Tensor, query_pos: Tensor, memory_pos: Tensor,
                need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        _check_positions("query_pos", query_pos, x)
        _check_positions("memory_pos", memory_pos, memory)
        query_key = x + query_pos
        attended, self_weights = self.self_attn(query_key, query_key, x)
        x = self.norm1(x + self.dropout1(attended))
        crossed, cross_weights = self.multihead_attn(x + query_pos, memory + memory_pos, memory)
        x = self.norm2(x + self.dropout2(crossed))
        x = self.norm3(x + self.dropout3(self._ff_block(x)))
        return (x, self_weights, cross_weights) if need_weights else x


def copy_attention(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Copy a HuggingFace DETR attention (``q_proj, k_proj, v_proj, o_proj``) into a `MultiHeadAttention`."""
    with torch.no_grad():
        for mine, name in ((ours.q_proj, "q_proj"), (ours.k_proj, "k_proj"), (ours.v_proj, "v_proj"),
                           (ours.out_proj, "o_proj")):
            source = getattr(theirs, name)
            mine.weight.copy_(source.weight)
            mine.bias.copy_(source.bias)
