"""Why several heads: a task that needs a sharp lookup and an average at once (chapter 3).

Every position of a random binary sequence of odd length must output the pair (the token one step back, the
majority token of the whole sequence). One attention layer reads the inputs, and a linear layer reads its output;
nothing else mixes positions. The first relation wants a *sharp* distribution (all weight on position i − 1),
the second a *flat* one (equal weight everywhere, to count). A single head has one softmax and must compromise:
weight α on i − 1 and the rest spread, so its count is shifted by the token it looks up, and near a tie the vote
comes out wrong. Two heads can hold one distribution each. `RelationReader` is the one-layer model;
`train_reader` trains it with the book's `attnbook.train.fit`.

Shapes: tokens ``(batch, n)`` → logits ``(batch, n, vocab²)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.core import MultiHeadAttention
from attnbook.errors import check_ndim, check_tensor
from attnbook.train import fit

VOCAB = 2  # binary tokens


def relation_batch(batch: int, n: int, vocab: int = VOCAB,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random tokens ``(batch, n)`` and labels ``vocab·x[i−1] + majority`` ``(batch, n)`` (−100 at i = 0).

    ``majority`` is 1 when more than half the tokens are 1; ``n`` must be odd so there is no tie.
    """
    if vocab != 2 or n % 2 == 0:
        raise ValueError(f"vocab, n: expected binary tokens and an odd length, got vocab={vocab}, n={n}")
    tokens = torch.randint(vocab, (batch, n), generator=generator)
    majority = ((tokens == 1).sum(1) * 2 > n).long()  # (batch,)
    labels = torch.full((batch, n), -100, dtype=torch.long)
    labels[:, 1:] = vocab * tokens[:, :-1] + majority[:, None]
    return tokens, labels


class RelationReader(nn.Module):
    """Token and learned position embeddings, one multi-head attention layer, a linear read-out.

    No residual connection: the output at position i sees only what attention brought to it.
    """

    def __init__(self, n: int, embed_dim: int, num_heads: int, vocab: int = VOCAB):
        super().__init__()
        self.n, self.vocab = n, vocab
        self.tokens = nn.Embedding(vocab, embed_dim)
        self.positions = nn.Parameter(torch.randn(n, embed_dim) * embed_dim**-0.5)
        self.attn = MultiHeadAttention(embed_dim, num_heads)
        self.out = nn.Linear(embed_dim, vocab * vocab)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(batch, n, vocab²)`` and the attention weights ``(batch, heads, n, n)``."""
        check_tensor("tokens", tokens)
        check_ndim("tokens", tokens, 2, "(batch, n) token ids")
        if tokens.shape[1] != self.n:
            raise ValueError(f"tokens: expected length n={self.n}, got shape {tuple(tokens.shape)}")
        x = self.tokens(tokens) + self.positions  # (batch, n, embed_dim)
        read, weights = self.attn(x, x, x)
        return self.out(read), weights


def train_reader(model: RelationReader, steps: int, batch: int = 64, lr: float = 3e-3,
                 generator: torch.Generator | None = None) -> list[float]:
    """Adam on fresh random batches, ``steps`` of them (one "epoch" of ``fit`` per step); returns the losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def loss_fn(data: tuple[Tensor, Tensor]) -> Tensor:
        tokens, labels = data
        logits, _ = model(tokens)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    return fit(model, optimizer, lambda: [relation_batch(batch, model.n, model.vocab, generator)], loss_fn, steps,
               desc=f"{model.attn.num_heads} head(s)")


@torch.no_grad()
def pair_accuracy(model: RelationReader, batches: int = 8, batch: int = 256,
                  generator: torch.Generator | None = None) -> float:
    """Share of positions (all but the first) whose pair (previous token, majority) is predicted exactly."""
    model.eval()
    hits = total = 0
    for _ in range(batches):
        tokens, labels = relation_batch(batch, model.n, model.vocab, generator)
        logits, _ = model(tokens)
        scored = labels != -100
        hits += int((logits.argmax(-1)[scored] == labels[scored]).sum())
        total += int(scored.sum())
    return hits / total
