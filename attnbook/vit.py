"""The Vision Transformer (Dosovitskiy et al. 2021): an image read as a sequence of patches. Chapter 6.

An image ``(batch, channels, height, width)`` is cut into non-overlapping ``patch × patch`` squares; each square,
flattened, is one "word" that a linear map embeds (`PatchEmbedding`, a strided convolution that equals that
linear map, see `patchify`). A learned class token is put in front, learned position embeddings are added, and
a pre-norm GELU encoder of the Transformer chapter's `attnbook.transformer.EncoderLayer` s (every attention
through `attnbook.core`) reads the ``patches + 1`` tokens; a linear head reads the class token after the final
LayerNorm. Shape legend: tokens ``(batch, patches + 1, embed_dim)``, weights ``(batch, heads, patches + 1,
patches + 1)``. ``ViT.from_reference`` copies a `transformers.ViTForImageClassification` (chapters 6 and 8).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnbook.errors import ShapeError, check_ndim, check_tensor
from attnbook.transformer import Encoder, EncoderLayer

Size = int | tuple[int, int]


def _pair(name: str, value: Size) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name}: expected a positive int or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def _check_images(name: str, images: object, channels: int, size: tuple[int, int]) -> Tensor:
    images = check_tensor(name, images)
    check_ndim(name, images, 4, "(batch, channels, height, width)")
    if images.shape[1] != channels or tuple(images.shape[2:]) != size:
        raise ShapeError(f"{name}: expected shape (batch, {channels}, {size[0]}, {size[1]}), "
                         f"got {tuple(images.shape)}")
    return images


def patchify(images: Tensor, patch_size: Size) -> Tensor:
    """Cut images into patches, row by row: ``(batch, C, H, W)`` → ``(batch, patches, C · p_h · p_w)``.

    Each patch is flattened channel first, then row, then column — the order of a convolution kernel's
    weights, so ``PatchEmbedding`` equals a linear map on these vectors.
    """
    images = check_tensor("images", images)
    check_ndim("images", images, 4, "(batch, channels, height, width)")
    ph, pw = _pair("patch_size", patch_size)
    batch, channels, height, width = images.shape
    if height % ph or width % pw:
        raise ShapeError(f"images: expected height and width divisible by patch_size ({ph}, {pw}), "
                         f"got shape {tuple(images.shape)}")
    x = images.reshape(batch, channels, height // ph, ph, width // pw, pw)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (batch, rows, cols, C, p_h, p_w)
    return x.reshape(batch, (height // ph) * (width // pw), channels * ph * pw)


class PatchEmbedding(nn.Module):
    """Embed each ``patch_size`` square of an image: ``(batch, C, H, W)`` → ``(batch, patches, embed_dim)``.

    A convolution whose kernel and stride are the patch size: the same linear map applied to every patch.
    ``image_size`` must be a multiple of ``patch_size`` (in both directions), else ``ValueError``.
    """

    def __init__(self, image_size: Size, patch_size: Size, in_channels: int, embed_dim: int):
        super().__init__()
        self.image_size, self.patch_size = _pair("image_size", image_size), _pair("patch_size", patch_size)
        if any(i % p for i, p in zip(self.image_size, self.patch_size)):
            raise ValueError(f"image_size: expected a multiple of patch_size {self.patch_size}, "
                             f"got {self.image_size}")
        self.in_channels, self.embed_dim = in_channels, embed_dim
        self.grid_size = (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.projection = nn.Conv2d(in_channels, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, pixel_values: Tensor) -> Tensor:
        _check_images("pixel_values", pixel_values, self.in_channels, self.image_size)
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # (batch, patches, embed_dim)


@dataclass
class ViTOutput:
    """Logits ``(batch, num_classes)``; with ``output_attentions``, one ``(batch, heads, patches + 1,
    patches + 1)`` tensor per layer (else None), as `transformers` returns them."""

    logits: Tensor
    attentions: tuple[Tensor, ...] | None = None


class ViT(nn.Module):
    """Patch embedding, class token, learned positions, a pre-norm encoder and a head on the class token.

    ``forward(pixel_values (batch, C, H, W), output_attentions=False)`` → `ViTOutput`. ``dropout`` applies
    after the embeddings, inside the feed-forward blocks, on the residual branches and on the attention
    weights. LayerNorms use ``layer_norm_eps`` (1e-12, HuggingFace's value). Linear layers start as PyTorch
    starts them (the book's small models train faster that way than with HuggingFace's N(0, 0.02²)); the
    class token and the position embeddings start at zero, so any structure the positions show was learned.
    """

    def __init__(self, image_size: Size, patch_size: Size, in_channels: int, num_classes: int, embed_dim: int,
                 depth: int, num_heads: int, mlp_dim: int, dropout: float = 0.0, *,
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        self.num_classes = num_classes
        self.patch_embedding = PatchEmbedding(image_size, patch_size, in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.patch_embedding.num_patches + 1, embed_dim))
        self.dropout = nn.Dropout(dropout)
        layer = EncoderLayer(embed_dim, num_heads, mlp_dim, dropout, activation="gelu", norm_first=True,
                             layer_norm_eps=layer_norm_eps)
        self.encoder = Encoder(layer, depth, nn.LayerNorm(embed_dim, eps=layer_norm_eps))
        self.classifier = nn.Linear(embed_dim, num_classes)

    def embed(self, pixel_values: Tensor) -> Tensor:
        """The encoder's input: [class token; patch embeddings] + positions, ``(batch, patches + 1, embed_dim)``."""
        patches = self.patch_embedding(pixel_values)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return self.dropout(torch.cat([cls, patches], dim=1) + self.position_embeddings)

    def forward(self, pixel_values: Tensor, output_attentions: bool = False) -> ViTOutput:
        x, weights = self.encoder(self.embed(pixel_values), need_weights=True)
        logits = self.classifier(x[:, 0])  # the class token, after the final LayerNorm
        return ViTOutput(logits, tuple(weights) if output_attentions else None)

    @classmethod
    def from_reference(cls, module: Any) -> "ViT":
        """Copy a `transformers.ViTForImageClassification` (transformers 5.x parameter names).

        Build the reference with ``attn_implementation="eager"`` to compare attention weights; our single
        ``dropout`` is its ``hidden_dropout_prob``.
        """
        if type(module).__name__ != "ViTForImageClassification":
            raise TypeError(f"module: expected transformers.ViTForImageClassification, got {type(module).__name__}")
        config = module.config
        if config.hidden_act != "gelu" or not config.qkv_bias:
            raise ValueError(f"module: hidden_act={config.hidden_act!r}, qkv_bias={config.qkv_bias} have no "
                             "counterpart here (expected 'gelu' and True)")
        new = cls(config.image_size, config.patch_size, config.num_channels, config.num_labels, config.hidden_size,
                  config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
                  config.hidden_dropout_prob, layer_norm_eps=config.layer_norm_eps)
        state = {hf_to_attnbook(k): v for k, v in module.state_dict().items()}
        new.load_state_dict(state, strict=True)
        return new.to(module.classifier.weight.dtype).eval()


def position_similarity(model: ViT) -> Tensor:
    """Cosine similarity between the learned position embeddings of every two patches (the class token's left
    out): ``(rows, cols, rows, cols)``, entry ``[i, j, k, l]`` comparing patch (i, j) with patch (k, l)."""
    if not isinstance(model, ViT):
        raise TypeError(f"model: expected an attnbook ViT, got {type(model).__name__}")
    rows, cols = model.patch_embedding.grid_size
    positions = nn.functional.normalize(model.position_embeddings[0, 1:].detach(), dim=-1)  # (patches, dim)
    return (positions @ positions.T).view(rows, cols, rows, cols)


_RENAMES = [
    (r"^vit\.embeddings\.patch_embeddings\.", "patch_embedding."),
    (r"^vit\.embeddings\.", ""),
    (r"^vit\.layers\.(\d+)\.attention\.o_proj\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^vit\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"^vit\.layers\.(\d+)\.layernorm_before\.", r"encoder.layers.\1.norm1."),
    (r"^vit\.layers\.(\d+)\.layernorm_after\.", r"encoder.layers.\1.norm2."),
    (r"^vit\.layers\.(\d+)\.mlp\.fc1\.", r"encoder.layers.\1.feed_forward.linear1."),
    (r"^vit\.layers\.(\d+)\.mlp\.fc2\.", r"encoder.layers.\1.feed_forward.linear2."),
    (r"^vit\.layernorm\.", "encoder.norm."),
]


def hf_to_attnbook(name: str) -> str:
    """Our parameter name for a `transformers` 5.x ViT parameter name (e.g. ``vit.layers.0.mlp.fc1.weight``
    → ``encoder.layers.0.feed_forward.linear1.weight``)."""
    for pattern, replacement in _RENAMES:
        name, count = re.subn(pattern, replacement, name)
        if count:
            break
    return name
