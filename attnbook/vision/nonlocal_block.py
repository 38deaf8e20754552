"""The non-local block of Wang et al. (2018): the core attention over every position of a feature map (chapter 5).

For a feature map x of shape ``(batch, channels, height, width)`` with N = height·width positions,

    y_i = (1 / C(x)) Σ_j f(x_i, x_j) g(x_j),        z = x + W_z y

with g, θ, φ and W_z 1×1 convolutions and four pairwise functions f:

    "gaussian"           f = exp(x_iᵀ x_j)                  C(x) = Σ_j f    → score "dot" on x itself, softmax
    "embedded_gaussian"  f = exp(θ(x_i)ᵀ φ(x_j))            C(x) = Σ_j f    → score "dot" on θ, φ, softmax
    "dot_product"        f = θ(x_i)ᵀ φ(x_j)                 C(x) = N        → score "dot", normalize "mean"
    "concatenation"      f = ReLU(w_fᵀ [θ(x_i), φ(x_j)])     C(x) = N        → `ConcatenationScore`, "mean"

Every form is one call of `attnbook.core.attention` on the flattened positions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnbook.core import attention
from attnbook.core.normalize import Normalize
from attnbook.core.scores import Score
from attnbook.errors import ShapeError, check_ndim, check_tensor

MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")


def check_image(name: str, x: object, channels: int | None = None, owner: str = "") -> Tensor:
    """Check that ``x`` is a ``(batch, channels, height, width)`` tensor (with ``channels`` if given)."""
    x = check_tensor(name, x)
    check_ndim(name, x, 4, "(batch, channels, height, width)")
    if channels is not None and x.shape[1] != channels:
        raise ShapeError(f"{name}: expected {channels} channels ({owner}), got shape {tuple(x.shape)}")
    return x


def flatten_positions(x: Tensor) -> Tensor:
    """(batch, channels, height, width) → (batch, height·width, channels): one row per position."""
    return x.flatten(2).transpose(1, 2)


def unflatten_positions(y: Tensor, height: int, width: int) -> Tensor:
    """(batch, height·width, channels) → (batch, channels, height, width)."""
    return y.transpose(1, 2).reshape(y.shape[0], y.shape[2], height, width)


class ConcatenationScore(nn.Module):
    """The concatenation pairwise function ReLU(w_fᵀ [θ_i, φ_j]) as a score for `attention`.

    Splitting w_f = [w_θ, w_φ] gives w_fᵀ [θ_i, φ_j] = w_θᵀ θ_i + w_φᵀ φ_j, so the (n_q, n_k) scores are a sum of
    a column and a row, with no (n_q, n_k, 2C') tensor built: query ``(..., n_q, C')``, key ``(..., n_k, C')``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.randn(2 * channels) / (2 * channels) ** 0.5)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        w_query, w_key = self.weight[: self.channels], self.weight[self.channels:]
        return torch.relu((query @ w_query).unsqueeze(-1) + (key @ w_key).unsqueeze(-2))


class NonLocalBlock(nn.Module):
    """A non-local block: ``x (batch, C, H, W) → z (batch, C, H, W)``, and optionally the weights (batch, N, N).

    ``inter_channels`` C′ is the width of θ, φ and g (default C // 2, as in the paper and mmcv). ``use_scale``
    divides the embedded-Gaussian scores by √C′ (mmcv's option; the only mode it applies to). The output
    convolution W_z starts at zero, so a new block is the identity and a trained network can take it in
    without being disturbed (the paper zeroes a batch norm's scale for the same reason).
    """

    def __init__(self, in_channels: int, inter_channels: int | None = None, mode: str = "embedded_gaussian",
                 use_scale: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if use_scale and mode != "embedded_gaussian":
            raise ValueError(f"use_scale: applies to mode 'embedded_gaussian' only, got mode {mode!r}")
        if in_channels < 1:
            raise ValueError(f"in_channels: expected a positive number, got {in_channels}")
        self.in_channels, self.mode, self.use_scale = in_channels, mode, use_scale
        self.inter_channels = max(in_channels // 2, 1) if inter_channels is None else inter_channels
        self.g = nn.Conv2d(in_channels, self.inter_channels, 1)
        if mode != "gaussian":
            self.theta = nn.Conv2d(in_channels, self.inter_channels, 1)
            self.phi = nn.Conv2d(in_channels, self.inter_channels, 1)
        if mode == "concatenation":
            self.concat = ConcatenationScore(self.inter_channels)
        self.out = nn.Conv2d(self.inter_channels, in_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def pairwise(self) -> tuple[Score, Normalize]:
        """The (score, normalize) pair that `attention` uses for this block's f and C(x)."""
        if self.mode == "concatenation":
            return self.concat, "mean"
        if self.mode == "dot_product":
            return "dot", "mean"
        return ("scaled_dot" if self.use_scale else "dot"), "softmax"

    def forward(self, x: Tensor, return_attention: bool = False):
        check_image("x", x, self.in_channels, "in_channels of NonLocalBlock")
        _, _, height, width = x.shape
        value = flatten_positions(self.g(x))  # (batch, N, C')
        if self.mode == "gaussian":
            query = key = flatten_positions(x)  # (batch, N, C)
        else:
            query, key = flatten_positions(self.theta(x)), flatten_positions(self.phi(x))  # (batch, N, C')
        score, normalize = self.pairwise()
        y, weights = attention(query, key, value, score=score, normalize=normalize)  # (batch, N, C')
        z = x + self.out(unflatten_positions(y, height, width))
        return (z, weights) if return_attention else z

    @classmethod
    def from_reference(cls, module: nn.Module) -> "NonLocalBlock":
        """Copy the weights of an ``mmcv.cnn.NonLocal2d`` built with ``norm_cfg=None`` and ``sub_sample=False``."""
        if type(module).__name__ != "NonLocal2d":
            raise TypeError(f"module: expected mmcv.cnn.NonLocal2d, got {type(module).__name__}")
        if getattr(module, "sub_sample", False):
            raise ValueError("module: sub_sample=True (max-pooled keys) has no counterpart here")
        if module.conv_out.norm_cfg is not None:
            raise ValueError("module: build it with norm_cfg=None (a normalised output has no counterpart here)")
        use_scale = bool(module.use_scale) and module.mode == "embedded_gaussian"
        new = cls(module.in_channels, module.inter_channels, module.mode, use_scale)
        pairs = [(new.g, module.g.conv), (new.out, module.conv_out.conv)]
        if module.mode != "gaussian":
            pairs += [(new.theta, module.theta.conv), (new.phi, module.phi.conv)]
        with torch.no_grad():
            for mine, theirs in pairs:
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
            if module.mode == "concatenation":
                new.concat.weight.copy_(module.concat_project.conv.weight.flatten())
        return new
