"""Swin Transformer's block (Liu et al. 2021): attention inside windows, shifted every other layer (chapter 9).

Three choices inside the core: the image of ``H × W`` tokens is cut into ``window × window`` windows and each
window attends only to itself (a pattern: which scores exist); every other block first rolls the image by
``shift`` tokens so that windows straddle the old borders, with a mask that keeps tokens rolled in from the far
side apart (a mask); and each head adds a learned bias B[Δrow, Δcol] for the offset between two tokens (a score
function: scaled dot + bias). Shape legend: ``(batch, H·W, dim)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnbook.core import MultiHeadAttention, scaled_dot_score
from attnbook.errors import ShapeError, check_ndim, check_tensor


def window_partition(x: Tensor, window: int) -> Tensor:
    """``(batch, H, W, C)`` → ``(batch · windows, window², C)``, windows in row-major order."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels).transpose(2, 3)
    return x.reshape(-1, window * window, channels)


def window_merge(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """The inverse of `window_partition`: ``(batch · windows, window², C)`` → ``(batch, H, W, C)``."""
    channels = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, channels).transpose(2, 3)
    return x.reshape(-1, height, width, channels)


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> Tensor:
    """Boolean ``(windows, window², window²)``: after rolling by ``shift``, True where two tokens of a window came
    from the same region of the unrolled image (tokens wrapped around from the far edge may not attend)."""
    def regions(size: int) -> Tensor:  # 0, 1, 2: before the last window, in it, wrapped around
        index = torch.arange(size)
        return (index >= size - window).long() + (index >= size - shift).long()

    label = (regions(height)[:, None] * 3 + regions(width)[None, :]).float()  # (H, W)
    label = window_partition(label[None, :, :, None], window).squeeze(-1)  # (windows, window²)
    return label[:, :, None] == label[:, None, :]


def relative_position_index(window: int) -> Tensor:
    """``(window², window²)`` index into the ``(2·window - 1)²`` table of offsets (Δrow, Δcol)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    offset = (coords[:, :, None] - coords[:, None, :]) + window - 1  # (2, N, N), each in [0, 2·window - 2]
    return offset[0] * (2 * window - 1) + offset[1]


class RelativePositionScore(nn.Module):
    """A score function for the core: q·k/√d plus a learned bias per head and relative offset in the window."""

    def __init__(self, num_heads: int, window: int):
        super().__init__()
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, num_heads) * 0.02)
        self.register_buffer("index", relative_position_index(window), persistent=False)

    def bias(self) -> Tensor:
        """``(heads, window², window²)``."""
        return self.table[self.index].permute(2, 0, 1)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        return scaled_dot_score(query, key) + self.bias()


class SwinBlock(nn.Module):
    """One Swin block: x + W-MSA(LN(x)), then + MLP(LN(·)); ``shift_size > 0`` makes it the shifted (SW-MSA) one."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int,
                 shift_size: int = 0, mlp_ratio: float = 4.0, layer_norm_eps: float = 1e-5):
        super().__init__()
        height, width = input_resolution
        if window_size < 1 or height % window_size or width % window_size:
            raise ValueError(f"window_size: expected a divisor of input_resolution {input_resolution}, got {window_size}")
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size: expected 0 <= shift_size < window_size={window_size}, got {shift_size}")
        self.dim, self.input_resolution, self.window_size, self.shift_size = dim, (height, width), window_size, shift_size
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attn = MultiHeadAttention(dim, num_heads, score=RelativePositionScore(num_heads, window_size))
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        mask = shifted_window_mask(height, width, window_size, shift_size) if shift_size else None
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        check_tensor("x", x)
        check_ndim("x", x, 3, "(batch, H·W, dim)")
        (height, width), w, s = self.input_resolution, self.window_size, self.shift_size
        if x.shape[1:] != (height * width, self.dim):
            raise ShapeError(f"x: expected shape (batch, {height * width}, {self.dim}) (H·W, dim), got {tuple(x.shape)}")
        batch = x.shape[0]
        image = self.norm1(x).view(batch, height, width, self.dim)
        if s:
            image = torch.roll(image, shifts=(-s, -s), dims=(1, 2))
        windows = window_partition(image, w)  # (batch · windows, w², dim)
        mask = None
        if self.mask is not None:  # (windows, w², w²) -> (batch · windows, 1, w², w²)
            mask = self.mask.repeat(batch, 1, 1)[:, None]
        out, _ = self.attn(windows, windows, windows, mask=mask)
        image = window_merge(out, w, height, width)
        if s:
            image = torch.roll(image, shifts=(s, s), dims=(1, 2))
        x = x + image.reshape(batch, height * width, self.dim)
        return x + self.mlp(self.norm2(x))

    @classmethod
    def from_reference(cls, layer: nn.Module) -> SwinBlock:
        """Copy a `transformers.models.swin.modeling_swin.SwinLayer` (its ``qkv_bias`` must be on)."""
        if type(layer).__name__ != "SwinLayer":
            raise TypeError(f"layer: expected transformers' SwinLayer, got {type(layer).__name__}")
        attn = layer.attention
        dim, hidden = attn.q_proj.in_features, layer.mlp.fc1.out_features
        if attn.q_proj.bias is None:
            raise ValueError("layer: expected qkv_bias=True (SwinBlock's projections all have biases)")
        new = cls(dim, tuple(layer.input_resolution), attn.num_attention_heads, int(layer.window_size),
                  int(layer.shift_size), hidden / dim, layer.layernorm_before.eps)
        pairs = [(new.norm1, layer.layernorm_before), (new.norm2, layer.layernorm_after),
                 (new.attn.q_proj, attn.q_proj), (new.attn.k_proj, attn.k_proj), (new.attn.v_proj, attn.v_proj),
                 (new.attn.out_proj, attn.o_proj), (new.mlp[0], layer.mlp.fc1), (new.mlp[2], layer.mlp.fc2)]
        with torch.no_grad():
            for mine, theirs in pairs:
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
            new.attn.score.table.copy_(attn.relative_position_bias.relative_position_bias_table)
        return new
