"""Mixing blocks with and without attention: MLP-Mixer (Tolstikhin et al. 2021) and the ViT block (chapter 9).

A Transformer block mixes information twice: across tokens (attention) and across features (an MLP), each as a
pre-norm residual. Replace the token mixing by an MLP applied to every feature channel across the tokens and the
model has no attention at all — MLP-Mixer, and Melas-Kyriazi's (2021) "feed-forward only" ViT, which swaps
each attention layer for a feed-forward layer over the patch axis. `MixingBlock` makes that one switch.
Shape legend: ``(batch, tokens, dim)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnbook.core import MultiHeadAttention
from attnbook.errors import ShapeError, check_ndim, check_tensor


def feed_forward(dim: int, hidden: int) -> nn.Sequential:
    """Linear → GELU → Linear, the MLP of both mixings."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class MixingBlock(nn.Module):
    """x + token_mixing(LN(x)), then + MLP(LN(·)); token mixing is ``"attention"`` (ViT) or ``"mlp"`` (Mixer)."""

    def __init__(self, num_tokens: int, dim: int, token_hidden: int, channel_hidden: int,
                 token_mixing: str = "mlp", num_heads: int = 1):
        super().__init__()
        if token_mixing not in ("mlp", "attention"):
            raise ValueError(f"token_mixing: expected 'mlp' or 'attention', got {token_mixing!r}")
        self.num_tokens, self.dim, self.token_mixing = num_tokens, dim, token_mixing
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        if token_mixing == "mlp":
            self.mix = feed_forward(num_tokens, token_hidden)  # acts on (batch, dim, tokens)
        else:
            self.mix = MultiHeadAttention(dim, num_heads)
        self.mlp = feed_forward(dim, channel_hidden)

    def forward(self, x: Tensor) -> Tensor:
        check_tensor("x", x)
        check_ndim("x", x, 3, "(batch, tokens, dim)")
        if x.shape[1:] != (self.num_tokens, self.dim):
            raise ShapeError(f"x: expected shape (batch, {self.num_tokens}, {self.dim}), got {tuple(x.shape)}")
        h = self.norm1(x)
        if self.token_mixing == "mlp":
            x = x + self.mix(h.transpose(1, 2)).transpose(1, 2)  # each channel mixes across the tokens
        else:
            x = x + self.mix(h, h, h)[0]
        return x + self.mlp(self.norm2(x))


class MLPMixer(nn.Module):
    """Patches → linear embedding → ``depth`` mixing blocks → LayerNorm → mean over tokens → classes.

    images ``(batch, channels, H, W)`` → logits ``(batch, num_classes)``. With ``token_mixing="attention"`` the
    same network is a small ViT (mean-pooled, no class token), with learned position embeddings unless
    ``positions=False``: attention is blind to the order of the patches, MLP token mixing is not.
    """

    def __init__(self, image_size: int, channels: int, patch_size: int, dim: int, depth: int, num_classes: int,
                 token_hidden: int, channel_hidden: int, token_mixing: str = "mlp", num_heads: int = 1,
                 positions: bool = True):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"patch_size: expected a divisor of image_size={image_size}, got {patch_size}")
        self.image_size, self.channels, self.patch_size = image_size, channels, patch_size
        num_tokens = (image_size // patch_size) ** 2
        self.embed = nn.Linear(patch_size * patch_size * channels, dim)
        with_positions = positions and token_mixing == "attention"
        self.position = nn.Parameter(torch.randn(1, num_tokens, dim) * 0.02) if with_positions else None
        self.blocks = nn.Sequential(*[MixingBlock(num_tokens, dim, token_hidden, channel_hidden, token_mixing,
                                                  num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, images: Tensor) -> Tensor:
        """``(batch, C, H, W)`` → ``(batch, patches, p·p·C)``, each patch flattened (row, column, channel)."""
        p = self.patch_size
        b, c, h, w = images.shape
        x = images.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # (b, h/p, w/p, p, p, c)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, images: Tensor) -> Tensor:
        check_tensor("images", images)
        check_ndim("images", images, 4, "(batch, channels, H, W)")
        expected = (self.channels, self.image_size, self.image_size)
        if images.shape[1:] != expected:
            raise ShapeError(f"images: expected shape (batch, {', '.join(map(str, expected))}), got {tuple(images.shape)}")
        x = self.embed(self.patches(images))
        if self.position is not None:
            x = x + self.position
        x = self.blocks(x)
        return self.head(self.norm(x).mean(1))

    @classmethod
    def from_reference(cls, model: nn.Sequential, image_size: int, channels: int, patch_size: int) -> MLPMixer:
        """Copy the ``nn.Sequential`` that mlp-mixer-pytorch's ``MLPMixer(...)`` builds (its sizes are read back)."""
        if not isinstance(model, nn.Sequential) or len(model) < 5:
            raise TypeError(f"model: expected mlp-mixer-pytorch's MLPMixer (an nn.Sequential), got {type(model).__name__}")
        embed, blocks, head = model[1], list(model[2:-3]), model[-1]
        token, channel = blocks[0][0].fn, blocks[0][1].fn
        new = cls(image_size, channels, patch_size, embed.out_features, len(blocks), head.out_features,
                  token[0].out_channels, channel[0].out_features)
        with torch.no_grad():
            pairs = [(new.embed, embed), (new.norm, model[-3]), (new.head, head)]
            for mine, (token_block, channel_block) in zip(new.blocks, blocks):
                pairs += [(mine.norm1, token_block.norm), (mine.norm2, channel_block.norm),
                          (mine.mix[0], token_block.fn[0]), (mine.mix[2], token_block.fn[3]),
                          (mine.mlp[0], channel_block.fn[0]), (mine.mlp[2], channel_block.fn[3])]
            for mine, theirs in pairs:
                mine.weight.copy_(theirs.weight.view_as(mine.weight))  # Conv1d (out, in, 1) -> Linear (out, in)
                mine.bias.copy_(theirs.bias)
        return new
