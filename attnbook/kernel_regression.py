"""Chapter 2: attention is a weighted average — Nadaraya–Watson kernel regression as attention.

Nadaraya (1964) and Watson (1964) estimate f(x) as a weighted average of observed targets,

    f̂(x) = Σ_i K((x - x_i)/h) y_i / Σ_j K((x - x_j)/h),

which is `attnbook.core.attention` with the query x, the keys x_i, the values y_i and, for the Gaussian kernel
K(u) = exp(-u²/2), the score -(x - x_i)²/(2h²): the softmax supplies the normalisation. Inputs here are 1-D:
``x_query (n_q,)``, ``x_train (n,)``, ``y_train (n,)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnbook.core import ScoreFn, attention
from attnbook.errors import ShapeError, check_ndim, check_tensor
from attnbook.train import fit


def gaussian_score(bandwidth: float | Tensor) -> ScoreFn:
    """The Gaussian kernel's log, -(q - k)²/(2h²), as a score on ``(..., n_q, 1)`` queries and ``(..., n_k, 1)`` keys."""

    def score(query: Tensor, key: Tensor) -> Tensor:
        difference = query - key.transpose(-2, -1)  # (..., n_q, 1) - (..., 1, n_k) -> (..., n_q, n_k)
        return -0.5 * (difference / bandwidth) ** 2

    return score


def _check_1d(x_query: Tensor, x_train: Tensor, y_train: Tensor) -> None:
    for name, tensor in (("x_query", x_query), ("x_train", x_train), ("y_train", y_train)):
        check_tensor(name, tensor)
        check_ndim(name, tensor, 1, "(n,)")
    if x_train.shape != y_train.shape:
        raise ShapeError(f"y_train: expected shape {tuple(x_train.shape)} (the x_train's), got {tuple(y_train.shape)}")


def nadaraya_watson(
    x_query: Tensor, x_train: Tensor, y_train: Tensor, bandwidth: float | Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Gaussian-kernel Nadaraya–Watson estimate at ``x_query``: returns ``(y_hat (n_q,), weights (n_q, n))``."""
    _check_1d(x_query, x_train, y_train)
    if torch.as_tensor(bandwidth).detach().le(0).any():
        raise ValueError(f"bandwidth: expected a positive number, got {bandwidth}")
    output, weights = attention(x_query[:, None], x_train[:, None], y_train[:, None],
                                mask=mask, score=gaussian_score(bandwidth))
    return output.squeeze(-1), weights


def leave_one_out_mask(n: int) -> Tensor:
    """``(n, n)`` mask that hides each training point from its own prediction (True = may attend)."""
    return ~torch.eye(n, dtype=torch.bool)


class NadarayaWatson(nn.Module):
    """Nadaraya–Watson regression whose bandwidth is learned (parameterised as log h, so h stays positive)."""

    def __init__(self, bandwidth: float = 1.0):
        super().__init__()
        if bandwidth <= 0:
            raise ValueError(f"bandwidth: expected a positive number, got {bandwidth}")
        self.log_bandwidth = nn.Parameter(torch.tensor(math.log(bandwidth)))

    @property
    def bandwidth(self) -> float:
        return self.log_bandwidth.exp().item()

    def forward(self, x_query: Tensor, x_train: Tensor, y_train: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return nadaraya_watson(x_query, x_train, y_train, self.log_bandwidth.exp(), mask=mask)


def fit_bandwidth(
    x_train: Tensor, y_train: Tensor, bandwidth: float = 1.0, steps: int = 200, lr: float = 0.05
) -> tuple[NadarayaWatson, list[float]]:
    """Learn h by minimising the leave-one-out squared error on the training set (each point predicted
    from all the others, so h cannot shrink to zero and memorise). Returns the model and the loss curve."""
    model = NadarayaWatson(bandwidth)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    mask = leave_one_out_mask(len(x_train))

    def loss_fn(_: None) -> Tensor:
        prediction, _ = model(x_train, x_train, y_train, mask=mask)
        return ((prediction - y_train) ** 2).mean()

    losses = fit(model, optimizer, lambda: (None,), loss_fn, steps, desc="bandwidth")  # one full-batch step per epoch
    return model, losses
