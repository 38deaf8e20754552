"""Attention as pooling: one learned query reads a sequence of states (Yang et al. 2016) (chapter 9).

A recurrent or convolutional encoder leaves one state per position; a classifier needs one vector. The last
state, the mean of the states, or attention with a learned query (the "context vector") over them are three
choices of pooling. Stacked twice — words into sentence vectors, then sentences into a document vector — it is
the hierarchical attention network. Shape legend: ``(batch, n, dim)`` states, ``(batch, n)`` valid-token masks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnbook.core import AdditiveScore, attention
from attnbook.errors import ShapeError, check_ndim, check_tensor

POOLINGS = ("attention", "mean", "last")
ENCODERS = ("gru", "cnn", "linear")


class AttentionPooling(nn.Module):
    """states ``(batch, n, dim)`` and a valid mask ``(batch, n)`` → pooled ``(batch, dim)``, weights ``(batch, n)``.

    The score is additive, vᵀ tanh(W h + W_q u), with a learned query u: the attention of Yang et al. (2016).
    """

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, dim) / dim**0.5)  # (1, dim): one learned query
        self.score = AdditiveScore(dim, dim, hidden or dim)

    def forward(self, states: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mask = None if valid is None else valid[:, None, :]  # (batch, 1, n)
        out, weights = attention(self.query, states, states, mask=mask, score=self.score)
        return out.squeeze(1), weights.squeeze(1)


class Convolution(nn.Module):
    """Two 1-d convolutions of width 3 with ReLU, (batch, n, input_dim) → (batch, n, out_dim): local states."""

    def __init__(self, input_dim: int, out_dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv1d(input_dim, out_dim, 3, padding=1), nn.ReLU(),
                                    nn.Conv1d(out_dim, out_dim, 3, padding=1), nn.ReLU())

    def forward(self, inputs: Tensor) -> tuple[Tensor, None]:
        return self.layers(inputs.transpose(1, 2)).transpose(1, 2), None


class Position(nn.Module):
    """tanh(W x + b) at every position, (batch, n, input_dim) → (batch, n, out_dim): states without context."""

    def __init__(self, input_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, out_dim)

    def forward(self, inputs: Tensor) -> tuple[Tensor, None]:
        return torch.tanh(self.linear(inputs)), None


class PooledEncoder(nn.Module):
    """A bidirectional GRU (``encoder="gru"``), a small CNN (``"cnn"``) or a per-position layer (``"linear"``)
    whose states are pooled by ``pooling``
    ("attention", "mean" or "last"): inputs ``(batch, n, input_dim)``, valid ``(batch, n)`` →
    ``(batch, 2·hidden)`` and the pooling weights ``(batch, n)``."""

    def __init__(self, input_dim: int, hidden: int, pooling: str = "attention", encoder: str = "gru"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder: expected one of {ENCODERS}, got {encoder!r}")
        self.pooling = pooling
        if encoder == "gru":
            self.encoder = nn.GRU(input_dim, hidden, batch_first=True, bidirectional=True)
        elif encoder == "cnn":
            self.encoder = Convolution(input_dim, 2 * hidden)
        else:  # each position on its own: no context
            self.encoder = Position(input_dim, 2 * hidden)
        self.pool = AttentionPooling(2 * hidden) if pooling == "attention" else None

    def forward(self, inputs: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        states, _ = self.encoder(inputs)  # (batch, n, 2·hidden)
        states = states * valid[:, :, None]  # padding carries nothing
        if self.pooling == "attention":
            return self.pool(states, valid)
        if self.pooling == "mean":
            weights = valid / valid.sum(-1, keepdim=True).clamp_min(1)
        else:  # the last real token (the forward direction has read everything; the backward one only it)
            last = (valid.sum(-1) - 1).clamp_min(0)
            weights = torch.zeros_like(valid, dtype=states.dtype).scatter_(1, last[:, None], 1.0)
        weights = weights.to(states.dtype)
        return (weights[:, :, None] * states).sum(1), weights


def _check_tokens(tokens: Tensor, ndim: int, legend: str) -> None:
    check_tensor("tokens", tokens)
    check_ndim("tokens", tokens, ndim, legend)
    if tokens.dtype != torch.long:
        raise ShapeError(f"tokens: expected integer token ids (torch.int64), got {tokens.dtype}")


class SequenceClassifier(nn.Module):
    """Single-level: tokens ``(batch, n)`` (0 = padding) → embedding → `PooledEncoder` → logits ``(batch, classes)``."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, num_classes: int, pooling: str = "attention",
                 encoder: str = "gru"):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.encoder = PooledEncoder(embed_dim, hidden, pooling, encoder)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        _check_tokens(tokens, 2, "(batch, n)")
        pooled, weights = self.encoder(self.embed(tokens), tokens != 0)
        return self.head(pooled), weights


class HierarchicalAttention(nn.Module):
    """Yang et al.'s (2016) two levels: tokens ``(batch, sentences, words)`` → sentence vectors by word attention →
    a document vector by sentence attention → logits; also returns both levels' weights."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, num_classes: int, encoder: str = "gru",
                 sentence_encoder: str | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.words = PooledEncoder(embed_dim, hidden, "attention", encoder)
        self.sentences = PooledEncoder(2 * hidden, hidden, "attention", sentence_encoder or encoder)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, tokens: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        _check_tokens(tokens, 3, "(batch, sentences, words)")
        batch, sentences, words = tokens.shape
        flat = tokens.reshape(batch * sentences, words)
        sentence_vectors, word_weights = self.words(self.embed(flat), flat != 0)  # (batch·S, 2h)
        valid = (tokens != 0).any(-1)  # (batch, S): sentences with at least one word
        document, sentence_weights = self.sentences(sentence_vectors.view(batch, sentences, -1), valid)
        return self.head(document), (word_weights.view(batch, sentences, words), sentence_weights)
