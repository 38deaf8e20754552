"""The appendix's real small network (chapter 10): scikit-learn's digits, a one-hidden-layer MLP trained with
`attnbook.train.fit`, and the matching of hidden units that compares two trained networks.

Two networks that differ only by a relabelling of their hidden units compute the same function; before saying
that two runs found different parameters, `match_hidden_units` relabels one to resemble the other as closely
as possible (a linear assignment, solved exactly by ``scipy.optimize.linear_sum_assignment``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import load_digits
from torch import Tensor, nn

from attnbook.errors import ShapeError, check_shape
from attnbook.train import fit


def digits(test_fraction: float = 0.3, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The 1,797 8×8 digits (shipped with scikit-learn), pixels scaled to [0, 1], split at random.

    Returns ``x_train (n, 64), y_train (n,), x_test (m, 64), y_test (m,)``.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a fraction in (0, 1), got {test_fraction}")
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def mlp(hidden: int = 32, seed: int = 0, inputs: int = 64, classes: int = 10) -> nn.Sequential:
    """Linear → tanh → Linear, initialised from ``seed`` (PyTorch's default initialisation)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, classes))


class MLPs(nn.Module):
    """``members`` independent copies of `mlp`, trained side by side: input (members, batch, 64) → logits
    (members, batch, 10). Member i starts exactly as ``mlp(hidden, seeds[i])``.

    Summing the members' losses gives each member its own gradient, and SGD, momentum and Adam update each
    number on its own: one batched run is the same as ``members`` separate runs, only faster.
    """

    def __init__(self, seeds: Sequence[int], hidden: int = 32, inputs: int = 64, classes: int = 10) -> None:
        super().__init__()
        nets = [mlp(hidden, seed, inputs, classes) for seed in seeds]
        if not nets:
            raise ValueError("seeds: expected at least one seed, got none")
        self.w1 = nn.Parameter(torch.stack([n[0].weight.T for n in nets]).detach().clone())  # (m, in, hidden)
        self.b1 = nn.Parameter(torch.stack([n[0].bias[None] for n in nets]).detach().clone())  # (m, 1, hidden)
        self.w2 = nn.Parameter(torch.stack([n[2].weight.T for n in nets]).detach().clone())  # (m, hidden, out)
        self.b2 = nn.Parameter(torch.stack([n[2].bias[None] for n in nets]).detach().clone())  # (m, 1, out)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[0] != len(self.w1) or x.shape[2] != self.w1.shape[1]:
            raise ShapeError(f"x: expected shape ({len(self.w1)}, batch, {self.w1.shape[1]}), got {tuple(x.shape)}")
        return torch.baddbmm(self.b2, torch.tanh(torch.baddbmm(self.b1, x, self.w1)), self.w2)

    def member(self, i: int) -> nn.Sequential:
        """Member ``i`` as a stand-alone `mlp` (a copy)."""
        net = mlp(self.w1.shape[2], 0, self.w1.shape[1], self.w2.shape[2])
        with torch.no_grad():
            for layer, w, b in ((net[0], self.w1[i], self.b1[i, 0]), (net[2], self.w2[i], self.b2[i, 0])):
                layer.weight.copy_(w.T)
                layer.bias.copy_(b)
        return net


def minibatches(n: int, members: int, batch_size: int, generator: torch.Generator) -> Callable[[], list[Tensor]]:
    """For `attnbook.train.fit`: a callable giving one epoch of example indices, ``(members, batch)`` per step,
    each member shuffling the ``n`` training examples in its own order."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive batch size, got {batch_size}")

    def epoch() -> list[Tensor]:
        orders = torch.stack([torch.randperm(n, generator=generator) for _ in range(members)])
        return list(orders.split(batch_size, dim=1))

    return epoch


def _check_examples(model: MLPs, x: Tensor, y: Tensor) -> None:
    check_shape("x", x, (None, model.w1.shape[1]))
    check_shape("y", y, (len(x),))


def fit_members(model: MLPs, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, epochs: int,
                batch_size: int, generator: torch.Generator, scheduler=None) -> Tensor:
    """Train every member with `attnbook.train.fit` on ``x (n, 64)``, ``y (n,)``; return each member's mean
    training loss in each epoch, ``(epochs, members)``."""
    _check_examples(model, x, y)
    record: list[Tensor] = []

    def loss_fn(index: Tensor) -> Tensor:  # index: (members, batch)
        logits = model(x[index])  # (members, batch, classes)
        per_member = F.cross_entropy(logits.transpose(1, 2), y[index], reduction="none").mean(1)
        record.append(per_member.detach())
        return per_member.sum()

    batches = minibatches(len(y), len(model.w1), batch_size, generator)
    fit(model, optimizer, batches, loss_fn, epochs, scheduler=scheduler, desc="members")
    return torch.stack(record).reshape(epochs, -1, len(model.w1)).mean(1)


@torch.no_grad()
def evaluate_members(model: MLPs, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Each member's mean cross-entropy and accuracy on ``(x, y)``: two ``(members,)`` tensors."""
    _check_examples(model, x, y)
    logits = model(x.expand(len(model.w1), *x.shape))
    loss = F.cross_entropy(logits.transpose(1, 2), y.expand(len(model.w1), -1), reduction="none").mean(1)
    return loss, (logits.argmax(-1) == y).float().mean(1)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``."""
    logits = model(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


def _layers(model: nn.Module, name: str) -> tuple[nn.Linear, nn.Linear]:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 2 or linears[0].out_features != linears[1].in_features:
        raise ValueError(f"{name}: expected an MLP with two Linear layers around one hidden layer, got {model}")
    return linears[0], linears[1]


def hidden_unit_vectors(model: nn.Module) -> Tensor:
    """One row per hidden unit: its incoming weights, its bias and its outgoing weights, ``(hidden, in + 1 + out)``."""
    first, second = _layers(model, "model")
    return torch.cat([first.weight, first.bias[:, None], second.weight.T], dim=1).detach()


def permute_hidden(model: nn.Module, order: Tensor) -> nn.Module:
    """A copy of ``model`` whose hidden unit j is the original's unit ``order[j]``: the same function."""
    first, second = _layers(model, "model")
    if sorted(order.tolist()) != list(range(first.out_features)):
        raise ValueError(f"order: expected a permutation of range({first.out_features}), got {order.tolist()}")
    permuted = copy.deepcopy(model)
    new_first, new_second = _layers(permuted, "model")
    with torch.no_grad():
        new_first.weight.copy_(first.weight[order])
        new_first.bias.copy_(first.bias[order])
        new_second.weight.copy_(second.weight[:, order])
    return permuted


def match_hidden_units(reference: nn.Module, other: nn.Module) -> Tensor:
    """The relabelling of ``other``'s hidden units closest to ``reference``'s (least total squared distance).

    Returns ``order`` such that ``permute_hidden(other, order)`` lines up unit by unit with ``reference``.
    """
    a, b = hidden_unit_vectors(reference), hidden_unit_vectors(other)
    if a.shape != b.shape:
        raise ValueError(f"other: expected hidden units shaped like the reference's {tuple(a.shape)}, "
                         f"got {tuple(b.shape)}")
    cost = torch.cdist(a.double(), b.double()) ** 2  # (hidden of reference, hidden of other)
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(cols[np.argsort(rows)], dtype=torch.long)


def parameters_vector(model: nn.Module) -> Tensor:
    """All parameters of ``model`` flattened into one vector."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def matched_distance(reference: nn.Module, other: nn.Module) -> tuple[float, float]:
    """Euclidean distance between the two parameter vectors, before and after matching hidden units."""
    matched = permute_hidden(other, match_hidden_units(reference, other))
    before = (parameters_vector(reference) - parameters_vector(other)).norm().item()
    after = (parameters_vector(reference) - parameters_vector(matched)).norm().item()
    return before, after
