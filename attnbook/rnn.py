"""Chapter 3's recurrent baselines: a GRU encoder-decoder with one context vector or with additive attention.

Cho et al. (2014) squeeze the whole source into the encoder's final state c and feed it to the decoder at every
step: a fixed-size bottleneck. Bahdanau et al. (2015) instead let decoder step t attend over all encoder states,
c_t = Σ_j α_tj h_j with α_t = softmax_j(vᵀ tanh(W s_{t-1} + U h_j)), scored by `attnbook.core.AdditiveScore`
through `attnbook.core.attention`. The recurrent cells are PyTorch's own (`nn.GRU`, `nn.GRUCell`).
Shape legend: src ``(batch, n_s)`` and tgt ``(batch, n_t)`` token ids; ``H`` the hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnbook.core import AdditiveScore, attention
from attnbook.errors import check_ndim, check_tensor


class GRUEncoder(nn.Module):
    """Bidirectional GRU over the real (unpadded) tokens.

    src ``(batch, n_s)`` → states ``(batch, n_s, 2H)`` (zero at padding) and the initial decoder state
    ``(batch, H)`` = tanh(W [h_forward_last; h_backward_first]).
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = nn.GRU(embed_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden_dim, hidden_dim)

    def forward(self, src: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(states (batch, n_s, 2H), src_valid (batch, n_s), initial state (batch, H))``."""
        check_tensor("src", src)
        check_ndim("src", src, 2, "(batch, n_s) token ids")
        valid = src != self.pad_id
        lengths = valid.sum(1)
        if bool((lengths == 0).any()):
            raise ValueError("src: every sequence needs at least one token that is not padding")
        packed = pack_padded_sequence(self.embed(src), lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, last = self.rnn(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=src.shape[1])
        initial = torch.tanh(self.bridge(torch.cat([last[0], last[1]], dim=-1)))
        return states, valid, initial


class GRUSeq2Seq(nn.Module):
    """GRU encoder-decoder, without attention (``attention=False``) or with Bahdanau's additive attention.

    Without attention the context is the fixed vector c = the decoder's initial state, fed at every step;
    with attention it is recomputed at every step from all encoder states. ``forward(src, tgt_in)`` → logits
    ``(batch, n_t, tgt_vocab)``; ``decode(..., need_weights=True)`` also returns the alignment
    ``(batch, n_t, n_s)`` (attention only).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, embed_dim: int = 64, hidden_dim: int = 64,
                 attention: bool = True, pad_id: int = 0):
        super().__init__()
        self.pad_id, self.hidden_dim, self.use_attention = pad_id, hidden_dim, attention
        self.encoder = GRUEncoder(src_vocab, embed_dim, hidden_dim, pad_id)
        context_dim = 2 * hidden_dim if attention else hidden_dim
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_dim, padding_idx=pad_id)
        self.cell = nn.GRUCell(embed_dim + context_dim, hidden_dim)
        self.score = AdditiveScore(hidden_dim, 2 * hidden_dim, hidden_dim) if attention else None
        self.output = nn.Linear(hidden_dim + context_dim + embed_dim, tgt_vocab)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The decoding context ``(states, src_valid, initial state)`` (see `GRUEncoder`)."""
        return self.encoder(src)

    def _context(self, state: Tensor, states: Tensor, valid: Tensor, fixed: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.score is None:
            return fixed, None
        # one query per sequence: (batch, 1, H) against keys = values = encoder states (batch, n_s, 2H)
        context, weights = attention(state[:, None, :], states, states, mask=valid[:, None, :], score=self.score)
        return context[:, 0], weights[:, 0]

    def decode(self, context: tuple[Tensor, Tensor, Tensor], tgt_in: Tensor,
               need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Teacher-forced logits ``(batch, n_t, vocab)`` for the target prefix ``tgt_in`` (batch, n_t)."""
        check_tensor("tgt_in", tgt_in)
        check_ndim("tgt_in", tgt_in, 2, "(batch, n_t) token ids")
        states, valid, state = context
        fixed = state
        embedded = self.tgt_embed(tgt_in)
        logits, alignment = [], []
        for t in range(tgt_in.shape[1]):
            ctx, weights = self._context(state, states, valid, fixed)
            state = self.cell(torch.cat([embedded[:, t], ctx], dim=-1), state)
            logits.append(self.output(torch.cat([state, ctx, embedded[:, t]], dim=-1)))
            alignment.append(weights)
        logits = torch.stack(logits, dim=1)
        if not need_weights:
            return logits
        if self.score is None:
            raise ValueError("need_weights: the model without attention has no alignment to return")
        return logits, torch.stack(alignment, dim=1)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decode(self.encode(src), tgt_in)

    def next_log_probs(self, context: tuple[Tensor, Tensor, Tensor], prefix: Tensor) -> Tensor:
        """Log-probabilities ``(batch, vocab)`` of the token after ``prefix`` (recomputed from the start)."""
        return torch.log_softmax(self.decode(context, prefix)[:, -1], dim=-1)
