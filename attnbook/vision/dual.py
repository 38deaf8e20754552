"""The dual attention network's two modules (Fu et al. 2019), chapter 5: attention over positions and over channels.

For A of shape ``(batch, C, H, W)`` with N = H·W positions:

    position:  S = softmax_i(B_jᵀ C_i) over positions i,   E_j = α Σ_i S_ji D_i + A_j   (B, C, D: 1×1 convolutions)
    channel:   X = softmax_i(A_jᵀ A_i) over channels i,    E_j = β Σ_i X_ji A_i + A_j   (A_j: channel j as an N-vector)

α and β start at zero, so each module starts as the identity. Both are one call of `attnbook.core.attention`:
positions attend positions, or channels attend channels. The released code's channel module applies the softmax
to max(E) − E instead of E (``released=True`` here); a softmax ignores a per-row constant, so that is softmax(−E):
each channel attends to the channels *least* like it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnbook.core import attention, dot_score
from attnbook.vision.nonlocal_block import check_image, flatten_positions, unflatten_positions


class PositionAttention(nn.Module):
    """DANet's position attention module: ``A (batch, C, H, W) → E``, weights ``(batch, N, N)`` if asked."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.channels = channels
        inner = max(channels // reduction, 1)
        self.query, self.key = nn.Conv2d(channels, inner, 1), nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, return_attention: bool = False):
        check_image("x", x, self.channels, "channels of PositionAttention")
        query, key = flatten_positions(self.query(x)), flatten_positions(self.key(x))  # (batch, N, C/r)
        out, weights = attention(query, key, flatten_positions(self.value(x)), score="dot")  # (batch, N, C)
        z = self.gamma * unflatten_positions(out, *x.shape[2:]) + x
        return (z, weights) if return_attention else z


def released_channel_score(query: Tensor, key: Tensor) -> Tensor:
    """The released DANet code's channel energy: max_i(E_ji) − E_ji with E = query keyᵀ."""
    energy = dot_score(query, key)
    return energy.amax(dim=-1, keepdim=True) - energy


class ChannelAttention(nn.Module):
    """DANet's channel attention module: ``A (batch, C, H, W) → E``, weights ``(batch, C, C)`` if asked."""

    def __init__(self, released: bool = False):
        super().__init__()
        self.released = released
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, return_attention: bool = False):
        check_image("x", x)
        channels = x.flatten(2)  # (batch, C, N): one row per channel
        score = released_channel_score if self.released else "dot"
        out, weights = attention(channels, channels, channels, score=score)  # (batch, C, N)
        z = self.beta * out.view_as(x) + x
        return (z, weights) if return_attention else z
