"""The Transformer's stacks (chapter 3): `Encoder` and `Decoder` of N identical layers, and the encoder-decoder.

`Transformer` is the counterpart of `torch.nn.Transformer` (batch first) on already embedded sequences; the
token-to-token model with embeddings and positions is `attnbook.transformer.seq2seq`. Masks are boolean,
True = may attend. Shape legend: ``(batch, n, d_model)``.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from attnbook.transformer.layers import DecoderLayer, EncoderLayer, _reference_activation


def clones(layer: nn.Module, num_layers: int) -> nn.ModuleList:
    """``num_layers`` independent copies of ``layer`` (each with its own weights), as a stack holds them."""
    if num_layers < 1:
        raise ValueError(f"num_layers: expected at least 1, got {num_layers}")
    return nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

class Encoder(nn.Module):
    """A stack of ``num_layers`` copies of an `EncoderLayer`, with an optional final LayerNorm (``norm``).

    ``forward(x, mask=None, need_weights=False)`` returns x, or ``(x, [weights per layer])``.
    """

    def __init__(self, layer: EncoderLayer, num_layers: int, norm: nn.LayerNorm | None = None):
        super().__init__()
        self.layers, self.norm = clones(layer, num_layers), norm

    def forward(self, x: Tensor, mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask, need_weights=True)
            weights.append(w)
        if self.norm is not None:
            x = self.norm(x)
        return (x, weights) if need_weights else x


class Decoder(nn.Module):
    """A stack of ``num_layers`` copies of a `DecoderLayer`, with an optional final LayerNorm (``norm``).

    ``forward(x, memory, self_mask=None, cross_mask=None, need_weights=False)`` returns x, or
    ``(x, [self weights per layer], [cross weights per layer])``.
    """

    def __init__(self, layer: DecoderLayer, num_layers: int, norm: nn.LayerNorm | None = None):
        super().__init__()
        self.layers, self.norm = clones(layer, num_layers), norm

    def forward(self, x: Tensor, memory: Tensor, self_mask: Tensor | None = None,
                cross_mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        self_weights, cross_weights = [], []
        for layer in self.layers:
            x, s, c = layer(x, memory, self_mask, cross_mask, need_weights=True)
            self_weights.append(s)
            cross_weights.append(c)
        if self.norm is not None:
            x = self.norm(x)
        return (x, self_weights, cross_weights) if need_weights else x


class Transformer(nn.Module):
    """Encoder-decoder on embedded sequences, the counterpart of `torch.nn.Transformer` (batch first).

    src ``(batch, n_s, d_model)``, tgt ``(batch, n_t, d_model)`` → ``(batch, n_t, d_model)``. Masks are
    boolean, True = may attend: ``src_mask`` broadcastable to ``(batch, heads, n_s, n_s)``, ``tgt_mask`` to
    ``(batch, heads, n_t, n_t)``, ``memory_mask`` to ``(batch, heads, n_t, n_s)``. Like torch's, both stacks
    end in a LayerNorm.
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, layer_norm_eps: float = 1e-5,
                 bias: bool = True):
        super().__init__()
        self.d_model, self.nhead = d_model, nhead
        args = (d_model, nhead, dim_feedforward, dropout, activation, norm_first, layer_norm_eps, bias)
        self.encoder = Encoder(EncoderLayer(*args), num_encoder_layers,
                               nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        self.decoder = Decoder(DecoderLayer(*args), num_decoder_layers,
                               nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias))

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        memory = self.encoder(src, src_mask)
        return self.decoder(tgt, memory, tgt_mask, memory_mask)

    @classmethod
    def from_reference(cls, module: nn.Transformer) -> "Transformer":
        """Copy a `torch.nn.Transformer` (built with ``batch_first=True`` to compare), final norms included."""
        if not isinstance(module, nn.Transformer):
            raise TypeError(f"module: expected torch.nn.Transformer, got {type(module).__name__}")
        first = module.encoder.layers[0]
        new = cls(module.d_model, module.nhead, len(module.encoder.layers), len(module.decoder.layers),
                  first.linear1.out_features, first.dropout.p, _reference_activation(first), first.norm_first,
                  first.norm1.eps, bias=first.linear1.bias is not None)
        new.encoder.layers = nn.ModuleList(EncoderLayer.from_reference(m) for m in module.encoder.layers)
        new.decoder.layers = nn.ModuleList(DecoderLayer.from_reference(m) for m in module.decoder.layers)
        for ours, theirs in ((new.encoder, module.encoder), (new.decoder, module.decoder)):
            ours.norm = None if theirs.norm is None else copy.deepcopy(theirs.norm)
        return new.to(first.linear1.weight.dtype)
