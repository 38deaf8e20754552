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
from attnbook.errors import ShapeError, check_ndim, check_tensor
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

    def _embed(self, name: str, ids: Tensor, embed: nn.Embedding, pos: nn.Module, offset: int = 0) -> Tensor:
        check_tensor(name, ids)
        check_ndim(name, ids, 2, "(batch, n) token ids")
        return pos(embed(ids) * math.sqrt(self.d_model), offset)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Encode source ids; return the decoding context ``(memory (batch, n_s, d_model), src_valid)``."""
        src_valid = src != self.pad_id
        self_mask, _ = source_masks(src_valid)
        return self.transformer.encoder(self._embed("src", src, self.src_embed, self.src_pos), self_mask), src_valid

    def decode(self, context: tuple[Tensor, Tensor], tgt_in: Tensor,
               need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        """Logits ``(batch, n_t, tgt_vocab)`` for target prefix ids; with ``need_weights`` also the weights."""
        out = self._decoder_states(context, tgt_in, need_weights)
        if need_weights:
            return self.generator(out[0]), out[1], out[2]
        return self.generator(out)

    def _decoder_states(self, context: tuple[Tensor, Tensor], tgt_in: Tensor, need_weights: bool = False):
        memory, src_valid = context
        _, cross_mask = source_masks(src_valid)
        x = self._embed("tgt_in", tgt_in, self.tgt_embed, self.tgt_pos)
        return self.transformer.decoder(x, memory, target_mask(tgt_in != self.pad_id), cross_mask,
                                        need_weights=need_weights)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decode(self.encode(src), tgt_in)

    def next_log_probs(self, context: tuple[Tensor, Tensor], prefix: Tensor) -> Tensor:
        """Log-probabilities ``(batch, tgt_vocab)`` of the next token after ``prefix`` (batch, t).

        Only the last position goes through the output layer: over a vocabulary of thousands that layer would
        otherwise cost more than the whole decoder.
        """
        return torch.log_softmax(self.generator(self._decoder_states(context, prefix)[:, -1]), dim=-1)

    def decode_step(self, context: tuple[Tensor, Tensor], prefix: Tensor,
                    cache: tuple[Tensor, ...] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """`next_log_probs` that reuses the keys and values of the positions it has seen (incremental decoding).

        ``cache`` is None, or what the call for a shorter ``prefix`` returned, its rows in ``prefix``'s order.
        Only the positions after the cached ones are computed, so a step costs O(t) attention instead of
        O(t²) work. Returns ``(log_probs (batch, tgt_vocab), cache)``; the cache is a tuple of batch-first
        tensors (so a beam search reorders it as it reorders prefixes): which cached positions are tokens,
        then each layer's self-attention keys and values, then each layer's projected memory.
        """
        memory, src_valid = context
        layers = self.transformer.decoder.layers
        if cache is None:
            past_valid, past = prefix[:, :0] != self.pad_id, [None] * len(layers)
            memory_kv = [layer.multihead_attn.project_kv(memory, memory) for layer in layers]
        else:
            past_valid, kv = cache[0], cache[1:]
            past = [(kv[2 * i], kv[2 * i + 1]) for i in range(len(layers))]
            memory_kv = [(kv[2 * i], kv[2 * i + 1]) for i in range(len(layers), 2 * len(layers))]
        n_past = past_valid.shape[1]
        if past_valid.shape[0] != prefix.shape[0] or prefix.shape[1] <= n_past:
            raise ShapeError(f"prefix: expected shape ({past_valid.shape[0]}, > {n_past}) after the cached "
                             f"positions, got {tuple(prefix.shape)}")
        new = prefix[:, n_past:]
        valid = torch.cat([past_valid, new != self.pad_id], dim=1)
        self_mask = causal_mask(new.shape[1], valid.shape[1], device=prefix.device)[None, None] & key_mask(valid)
        _, cross_mask = source_masks(src_valid)
        x = self._embed("prefix", new, self.tgt_embed, self.tgt_pos, offset=n_past)
        cache_kv = []
        for layer, layer_past, layer_memory in zip(layers, past, memory_kv):
            x, layer_kv = layer.extend(x, layer_past, layer_memory, self_mask, cross_mask)
            cache_kv += layer_kv
        if self.transformer.decoder.norm is not None:
            x = self.transformer.decoder.norm(x)
        log_probs = torch.log_softmax(self.generator(x[:, -1]), dim=-1)
        return log_probs, (valid, *cache_kv, *(t for pair in memory_kv for t in pair))
