"""Chapter 2's two measured experiments: why the score is divided by √d, and trained scores.

`scaling_row` measures, for one feature size d, what the unscaled and the scaled dot product do to the softmax
and to the gradients that flow back into the scores, the query and the keys. `retrieval_task` and
`train_retrieval` train a parametrised score (`GeneralScore`, `AdditiveScore`) to find, among a set of keys, the
one that belongs to a query living in another space. Shapes: queries ``(N, 1, d_q)``, keys ``(N, n_k, d_k)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.core import dot_score
from attnbook.errors import check_shape
from attnbook.train import fit


def key_participation(key_grad: Tensor) -> Tensor:
    """How many keys share the gradient: (Σ_j g_j)² / Σ_j g_j² of the per-key norms g_j, per query.

    key_grad ``(N, n_k, d)`` → ``(N,)``; n_k when every key gets the same gradient, 1 when one key gets all,
    0 for a query whose keys get no gradient at all.
    """
    norms = key_grad.norm(dim=-1)  # (N, n_k)
    total = (norms**2).sum(-1)
    return torch.where(total > 0, norms.sum(-1) ** 2 / total.clamp_min(1e-30), torch.zeros_like(total))


def scaling_row(dim: int, n_queries: int = 1000, n_keys: int = 16,
                generator: torch.Generator | None = None) -> dict[str, float]:
    """Unit-variance queries and keys of size ``dim``, scored unscaled ("raw") and divided by √d ("scaled").

    A random upstream gradient (as from later layers) flows back through the softmax. Returns the score
    variance and, per scaling, the mean largest weight, the gradient norm with respect to the scores and to the
    query, the number of keys that share the keys' gradient (`key_participation`), and the share of queries
    whose gradient underflowed to exactly zero.
    """
    query = torch.randn(n_queries, 1, dim, generator=generator)  # (N, 1, d)
    key = torch.randn(n_queries, n_keys, dim, generator=generator)  # (N, n_k, d)
    upstream = torch.randn(n_queries, n_keys, generator=generator)  # (N, n_k)
    raw = dot_score(query, key).squeeze(1)  # (N, n_k)
    row = {"d": dim, "var": raw.var().item(), "var_scaled": raw.var().item() / dim}
    for label, scale in (("raw", 1.0), ("scaled", math.sqrt(dim))):
        q, k = query.clone().requires_grad_(True), key.clone().requires_grad_(True)
        scores = dot_score(q, k).squeeze(1) / scale
        scores.retain_grad()
        weights = torch.softmax(scores, dim=-1)
        (weights * upstream).sum().backward()
        row[f"max_{label}"] = weights.max(-1).values.mean().item()
        row[f"grad_{label}"] = scores.grad.norm(dim=-1).mean().item()
        row[f"grad_q_{label}"] = q.grad.norm(dim=-1).mean().item()
        row[f"keys_{label}"] = key_participation(k.grad).mean().item()
        row[f"dead_{label}"] = (q.grad.norm(dim=-1) == 0).float().mean().item()
    return row


@dataclass
class RetrievalTask:
    """Examples of "find the key that belongs to this query": queries ``(N, 1, d_q)``, keys ``(N, n_k, d_k)``,
    and the index ``(N,)`` of the right key."""

    queries: Tensor
    keys: Tensor
    target: Tensor


def retrieval_task(n: int, query_dim: int, key_dim: int, n_keys: int, latent_dim: int, query_map: Tensor,
                   key_map: Tensor, noise: float = 0.1, generator: torch.Generator | None = None) -> RetrievalTask:
    """Every example has ``n_keys`` items with latent vectors z (``latent_dim``); item j's key is ``key_map`` z_j,
    and the query is ``query_map`` z_t (+ noise) for one item t. The maps are fixed, hidden from the scorer."""
    check_shape("query_map", query_map, (query_dim, latent_dim))
    check_shape("key_map", key_map, (key_dim, latent_dim))
    latent = torch.randn(n, n_keys, latent_dim, generator=generator)  # (N, n_k, r)
    target = torch.randint(0, n_keys, (n,), generator=generator)
    keys = latent @ key_map.T  # (N, n_k, d_k)
    chosen = latent[torch.arange(n), target]  # (N, r)
    queries = (chosen @ query_map.T + noise * torch.randn(n, query_dim, generator=generator))[:, None, :]
    return RetrievalTask(queries, keys, target)


def retrieval_accuracy(score: nn.Module, task: RetrievalTask) -> float:
    """Share of examples whose largest score is on the right key."""
    with torch.no_grad():
        return (score(task.queries, task.keys).squeeze(1).argmax(-1) == task.target).float().mean().item()


def train_retrieval(score: nn.Module, task: RetrievalTask, steps: int = 300, batch: int = 64, lr: float = 0.01,
                    generator: torch.Generator | None = None) -> list[float]:
    """Train ``score`` with Adam on cross-entropy over the keys (the attention weight of the right key);
    returns the loss per step."""
    check_shape("task.keys", task.keys, (task.queries.shape[0], None, None))
    optimizer = torch.optim.Adam(score.parameters(), lr=lr)

    def draw() -> list[Tensor]:  # one fresh mini-batch of example indices per step
        return [torch.randint(0, task.target.shape[0], (batch,), generator=generator)]

    def loss_fn(rows: Tensor) -> Tensor:
        logits = score(task.queries[rows], task.keys[rows]).squeeze(1)  # (batch, n_k)
        return F.cross_entropy(logits, task.target[rows])

    return fit(score, optimizer, draw, loss_fn, steps, desc="retrieval")
