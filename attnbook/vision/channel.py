"""Channel and spatial attention on feature maps (chapter 5): squeeze-and-excitation and CBAM.

Both re-weight a feature map ``(batch, channels, height, width)`` by a gate in (0, 1) computed from global
summaries, with no softmax over positions::

    SE    (Hu et al. 2018):  s = σ(W₂ ReLU(W₁ avgpool(x))),                      x̃ = s ⊙ x   (one weight per channel)
    CBAM  (Woo et al. 2018): M_c = σ(MLP(avgpool(x)) + MLP(maxpool(x))),         x′ = M_c ⊙ x
                             M_s = σ(conv₇ₓ₇([mean_c(x′), max_c(x′)])),         x″ = M_s ⊙ x′  (one weight per pixel)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnbook.vision.nonlocal_block import check_image

POOLS = ("avg", "max")


class SqueezeExcitation(nn.Module):
    """Channel attention: ``x (batch, C, H, W) → x ⊙ s`` with one gate s_c ∈ (0, 1) per channel.

    ``pools`` lists the global descriptors whose MLP outputs are summed before the sigmoid: ``("avg",)`` is SE,
    ``("avg", "max")`` CBAM's channel module. The hidden width is ``hidden_channels`` or C // ``reduction``
    (at least 1).
    """

    def __init__(self, channels: int, reduction: int = 16, pools: tuple[str, ...] = ("avg",),
                 hidden_channels: int | None = None):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction: expected a positive integer, got {reduction}")
        if not pools or any(p not in POOLS for p in pools):
            raise ValueError(f"pools: expected a non-empty tuple of names in {POOLS}, got {pools!r}")
        self.channels, self.pools = channels, tuple(pools)
        hidden = max(channels // reduction, 1) if hidden_channels is None else hidden_channels
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def gate(self, x: Tensor) -> Tensor:
        """The channel weights s, shape (batch, C)."""
        check_image("x", x, self.channels, "channels of SqueezeExcitation")
        descriptors = {"avg": x.mean(dim=(2, 3)), "max": x.amax(dim=(2, 3))}  # (batch, C) each
        logits = sum(self.fc2(self.fc1(descriptors[p]).relu()) for p in self.pools)
        return logits.sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)[:, :, None, None]

    @classmethod
    def from_reference(cls, module: nn.Module) -> "SqueezeExcitation":
        """Copy the weights of ``monai.networks.blocks.ChannelSELayer`` (2-D, ReLU then sigmoid, no residual)."""
        if type(module).__name__ != "ChannelSELayer":
            raise TypeError(f"module: expected monai ChannelSELayer, got {type(module).__name__}")
        first, act1, second, act2 = module.fc
        if not (isinstance(act1, nn.ReLU) and isinstance(act2, nn.Sigmoid)) or module.add_residual:
            raise ValueError("module: expected ReLU and sigmoid activations and add_residual=False (SE's choice)")
        new = cls(first.in_features, hidden_channels=first.out_features)
        new.fc1.load_state_dict(first.state_dict())
        new.fc2.load_state_dict(second.state_dict())
        return new


class SpatialAttention(nn.Module):
    """CBAM's spatial module: ``x (batch, C, H, W) → x ⊙ M_s`` with one gate per pixel from a k×k convolution
    of the channel-wise mean and maximum."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd positive size (the map keeps its size), got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def gate(self, x: Tensor) -> Tensor:
        """The spatial map M_s, shape (batch, 1, H, W)."""
        check_image("x", x)
        pooled = [x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)]  # (batch, 1, H, W) each
        return self.conv(torch.cat(pooled, dim=1)).sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Convolutional block attention module: channel attention (average- and max-pooled), then spatial."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = SqueezeExcitation(channels, reduction, pools=POOLS)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))
