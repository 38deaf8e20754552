"""DETR, the DEtection TRansformer of Carion et al. (2020), at chapter 6's scale.

A CNN turns the image into a feature map ``(batch, C, h, w)``; a 1×1 convolution projects it to ``d_model``
and the h·w cells become a sequence. The encoder (`DetrEncoderLayer`) lets every cell attend to every other;
the decoder (`DetrDecoderLayer`) starts from zeros and ``num_queries`` learned object queries, which attend to
each other and to the encoded image. After a final LayerNorm, a linear head scores ``num_classes`` + 1 classes
(the last is "no object") and a 3-layer MLP gives a box (cx, cy, w, h) squashed into [0, 1] by a sigmoid.
`DETR.from_reference` copies everything after the backbone from HuggingFace's ``DetrForObjectDetection``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.detr.layers import (
    DetrDecoderLayer,
    DetrEncoderLayer,
    copy_attention,
    sine_position_embedding,
)
from attnbook.errors import ShapeError, check_ndim, check_tensor


class ConvBackbone(nn.Sequential):
    """A small CNN: 3×3 convolutions with batch norm and ReLU; stride 2 halves the map (``out_channels``)."""

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (32, 64, 64),
                 strides: Sequence[int] = (2, 2, 1)):
        if len(channels) != len(strides) or not channels:
            raise ValueError(f"strides: expected one stride per channel size ({len(channels)}), got {len(strides)}")
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip([in_channels, *channels], channels, strides):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        super().__init__(*layers)
        self.out_channels = channels[-1]


class BoxHead(nn.Module):
    """An MLP with ReLU between its ``num_layers`` linear layers (DETR's box predictor has 3)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int = 4, num_layers: int = 3):
        super().__init__()
        sizes = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:] + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class DETR(nn.Module):
    """Set prediction of ``num_queries`` (class, box) pairs per image. See the module docstring.

    ``backbone`` maps images ``(batch, 3, H, W)`` to ``(batch, backbone_channels, h, w)`` (default: a
    `ConvBackbone`); with ``backbone=False`` the model starts from feature maps (`predict_from_features`).
    ``temperature`` sets the lowest frequency of the sine positions (`sine_position_embedding`).
    """

    def __init__(self, num_classes: int, num_queries: int = 100, d_model: int = 256, num_heads: int = 8,
                 num_encoder_layers: int = 6, num_decoder_layers: int = 6, dim_feedforward: int = 2048,
                 dropout: float = 0.1, backbone: nn.Module | bool | None = None,
                 backbone_channels: int | None = None, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 temperature: float = 10000.0):
        super().__init__()
        if num_classes < 1 or num_queries < 1:
            raise ValueError(f"num_classes, num_queries: expected at least 1, got {num_classes}, {num_queries}")
        if backbone is None:
            backbone = ConvBackbone()
        self.backbone = backbone if isinstance(backbone, nn.Module) else None
        channels = backbone_channels or getattr(self.backbone, "out_channels", None)
        if channels is None:
            raise ValueError("backbone_channels: expected the number of channels of the backbone's feature map")
        self.num_classes, self.num_queries, self.d_model = num_classes, num_queries, d_model
        self.temperature = temperature
        self.input_proj = nn.Conv2d(channels, d_model, kernel_size=1)
        args = (d_model, num_heads, dim_feedforward, dropout, activation, layer_norm_eps)
        self.encoder_layers = nn.ModuleList(DetrEncoderLayer(*args) for _ in range(num_encoder_layers))
        self.decoder_layers = nn.ModuleList(DetrDecoderLayer(*args) for _ in range(num_decoder_layers))
        self.decoder_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.class_head = nn.Linear(d_model, num_classes + 1)
        self.box_head = BoxHead(d_model, d_model, 4, 3)

    def _heads(self, x: Tensor) -> dict[str, Tensor]:
        return {"pred_logits": self.class_head(x), "pred_boxes": self.box_head(x).sigmoid()}

    def predict_from_features(self, features: Tensor, need_weights: bool = False,
                              auxiliary: bool = False) -> dict[str, Tensor | list]:
        """Feature map ``(batch, C, h, w)`` → ``pred_logits (batch, queries, classes + 1)``, ``pred_boxes
        (batch, queries, 4)``.

        ``need_weights`` adds ``encoder_attentions`` (one ``(batch, heads, h·w, h·w)`` per layer),
        ``decoder_attentions`` (``(batch, heads, queries, queries)``) and ``cross_attentions`` (``(batch,
        heads, queries, h·w)``, cells row by row); ``auxiliary`` adds ``aux_outputs``, the heads' predictions
        after each earlier decoder layer, as DETR's auxiliary losses use them.
        """
        check_ndim("features", check_tensor("features", features), 4, "(batch, channels, height, width)")
        if features.shape[1] != self.input_proj.in_channels:
            raise ShapeError(f"features: expected {self.input_proj.in_channels} channels, got shape "
                             f"{tuple(features.shape)}")
        batch, _, height, width = features.shape
        x = self.input_proj(features).flatten(2).transpose(1, 2)  # (batch, h·w, d_model)
        pos = sine_position_embedding(height, width, self.d_model, self.temperature).to(x)
        encoder_weights, self_weights, cross_weights, intermediate = [], [], [], []
        for layer in self.encoder_layers:
            x, weights = layer(x, pos, need_weights=True)
            encoder_weights.append(weights)
        query_pos = self.query_embed.weight[None].expand(batch, -1, -1)
        out = torch.zeros_like(query_pos)
        for layer in self.decoder_layers:
            out, s, c = layer(out, x, query_pos, pos, need_weights=True)
            self_weights.append(s)
            cross_weights.append(c)
            intermediate.append(out)
        result: dict[str, Tensor | list] = dict(self._heads(self.decoder_norm(out)))
        if need_weights:
            result.update(encoder_attentions=encoder_weights, decoder_attentions=self_weights,
                          cross_attentions=cross_weights)
        if auxiliary:
            result["aux_outputs"] = [self._heads(self.decoder_norm(h)) for h in intermediate[:-1]]
        return result

    def forward(self, images: Tensor, need_weights: bool = False, auxiliary: bool = False) -> dict[str, Tensor | list]:
        """Images ``(batch, channels, H, W)`` → the backbone's features → `predict_from_features`."""
        if self.backbone is None:
            raise RuntimeError("images: this DETR has no backbone; call predict_from_features(features)")
        check_ndim("images", check_tensor("images", images), 4, "(batch, channels, height, width)")
        return self.predict_from_features(self.backbone(images), need_weights, auxiliary)

    @classmethod
    def from_reference(cls, module: nn.Module) -> "DETR":
        """Copy HuggingFace's ``DetrForObjectDetection`` after its backbone (the result has ``backbone=None``).

        The input projection, every encoder and decoder layer, the decoder's final norm, the object queries
        and both heads are copied; `predict_from_features` on the reference's feature map then reproduces its
        ``logits`` and ``pred_boxes``.
        """
        if type(module).__name__ != "DetrForObjectDetection":
            raise TypeError(f"module: expected transformers' DetrForObjectDetection, got {type(module).__name__}")
        config, model = module.config, module.model
        if config.position_embedding_type != "sine":
            raise ValueError(f"module: position_embedding_type {config.position_embedding_type!r} is not 'sine'")
        if (config.encoder_attention_heads, config.encoder_ffn_dim) != (config.decoder_attention_heads,
                                                                         config.decoder_ffn_dim):
            raise ValueError("module: encoder and decoder must have the same heads and feed-forward size")
        norm_eps = model.decoder.layernorm.eps
        new = cls(config.num_labels, config.num_queries, config.d_model, config.encoder_attention_heads,
                  config.encoder_layers, config.decoder_layers, config.encoder_ffn_dim, config.dropout,
                  backbone=False, backbone_channels=model.input_projection.in_channels,
                  activation=config.activation_function, layer_norm_eps=norm_eps)
        with torch.no_grad():
            pairs = [(new.input_proj, model.input_projection), (new.decoder_norm, model.decoder.layernorm),
                     (new.query_embed, model.query_position_embeddings),
                     (new.class_head, module.class_labels_classifier)]
            pairs += list(zip(new.box_head.layers, module.bbox_predictor.layers))
            for ours, theirs in zip(new.encoder_layers, model.encoder.layers):
                copy_attention(ours.self_attn, theirs.self_attn)
                pairs += [(ours.norm1, theirs.self_attn_layer_norm), (ours.norm2, theirs.final_layer_norm),
                          (ours.linear1, theirs.mlp.fc1), (ours.linear2, theirs.mlp.fc2)]
            for ours, theirs in zip(new.decoder_layers, model.decoder.layers):
                copy_attention(ours.self_attn, theirs.self_attn)
                copy_attention(ours.multihead_attn, theirs.encoder_attn)
                pairs += [(ours.norm1, theirs.self_attn_layer_norm), (ours.norm2, theirs.encoder_attn_layer_norm),
                          (ours.norm3, theirs.final_layer_norm), (ours.linear1, theirs.mlp.fc1),
                          (ours.linear2, theirs.mlp.fc2)]
            for ours, theirs in pairs:
                ours.load_state_dict(theirs.state_dict())
        return new.to(module.class_labels_classifier.weight.dtype)
