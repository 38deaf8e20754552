"""Sequence to sequence with the Transformer (chapter 3): token embeddings, positions and the masks built from ids.

`Seq2SeqTransformer` maps source and target-prefix token ids to next-token logits; `source_masks` and
`target_mask` turn "is a real token" masks into the core's boolean masks (True = may attend). Decoding is in
`attnbook.transformer.decoding`, training in `attnbook.transformer.training`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnbook.core import causal_mask, key_mask
from attnbook.errors import check_ndim, check_tensor
from attnbook.positional import positional_encoding
from attnbook.transformer.model import Transformer

def source_masks(src_valid: Tensor) -> tuple[Tensor, Tensor]:
    """Encoder self-attention and cross-attention masks from ``src_valid`` (batch, n_s): both hide padding.

    Returns ``(batch, 1, 1, n_s)`` masks (the same tensor twice, named for where each is used).
    """
    mask = key_mask(src_valid)
    return mask, mask


def target_mask(tgt_valid: Tensor) -> Tensor:
    """Decoder self-attention mask ``(batch, 1, n_t, n_t)``: causal (no peeking ahead) AND not padding."""
    check_tensor("tgt_valid", tgt_valid)
    check_ndim("tgt_valid", tgt_valid, 2, "(batch, n_t)")
    n = tgt_valid.shape[1]
    return causal_mask(n, device=tgt_valid.device)[None, None] & key_mask(tgt_valid)



class Seq2SeqTransformer(nn.Module):
    """A token-to-token Transformer: embeddings × √d_model, positional encoding, `Transformer`, output layer.

    src ``(batch, n_s)`` and tgt_in ``(batch, n_t)`` token ids (``pad_id`` for padding) → logits
    ``(batch, n_t, tgt_vocab)``. Padding and causal masks are built from the ids. ``positional`` is
    "sinusoidal" or "learned".
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 64, nhead: int = 4,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2, dim_feedforward: int = 128,
                 dropout: float = 0.1, pad_id: int = 0, max_len: int = 64, positional: str = "sinusoidal",
                 norm_first: bool = False):
        super().__init__()
        self.pad_id, self.d_model = pad_id, d_model
        self.src_embed = nn.Embedding(src_vocab, d_model, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model, padding_idx=pad_id)
        self.src_pos = positional_encoding(positional, d_model, max_len, dropout)
        self.tgt_pos = positional_encoding(positional, d_model, max_len, dropout)
        self.transformer = Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
                                       dropout, norm_first=norm_first)
        self.generator = nn.Linear(d_model, tgt_vocab)
        for embed in (self.src_embed, self.tgt_embed):  # std d^-1/2, so embeddings × √d have unit scale like PE
            nn.init.normal_(embed.weight, std=d_model**-0.5)
            embed.weight.data[pad_id] = 0.0

    def _embed(self, name: str, ids: Tensor, embed: nn.Embedding, pos: nn.Module) -> Tensor:
        check_tensor(name, ids)
        check_ndim(name, ids, 2, "(batch, n) token ids")
        return pos(embed(ids) * math.sqrt(self.d_model))

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Encode source ids; return the decoding context ``(memory (batch, n_s, d_model), src_valid)``."""
        src_valid = src != self.pad_id
        self_mask, _ = source_masks(src_valid)
        return self.transformer.encoder(self._embed("src", src, self.src_embed, self.src_pos), self_mask), src_valid

    def decode(self, context: tuple[Tensor, Tensor], tgt_in: Tensor,
               need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        """Logits ``(batch, n_t, tgt_vocab)`` for target prefix ids; with ``need_weights`` also the weights."""
        memory, src_valid = context
        _, cross_mask = source_masks(src_valid)
        x = self._embed("tgt_in", tgt_in, self.tgt_embed, self.tgt_pos)
        out = self.transformer.decoder(x, memory, target_mask(tgt_in != self.pad_id), cross_mask,
                                       need_weights=need_weights)
        if need_weights:
            return self.generator(out[0]), out[1], out[2]
        return self.generator(out)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decode(self.encode(src), tgt_in)

    def next_log_probs(self, context: tuple[Tensor, Tensor], prefix: Tensor) -> Tensor:
        """Log-probabilities ``(batch, tgt_vocab)`` of the next token after ``prefix`` (batch, t)."""
        return torch.log_softmax(self.decode(context, prefix)[:, -1], dim=-1)
