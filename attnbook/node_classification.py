"""Chapter 7's training protocol for node classification: full-batch Adam with the GAT paper's early stopping.

One recipe trains the GAT (`attnbook.gat`) and its baselines, the GCN and the MLP (`attnbook.gcn`), through the
book's one loop, `attnbook.train.fit`: an epoch is one Adam step on the training nodes, and the hook after it
evaluates every node once without dropout, keeps the checkpoint and stops when patience runs out.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook import repro
from attnbook.train import Patience, fit


@dataclass(frozen=True)
class NodeClassifierRecipe:
    """Optimiser and stopping rule. ``patience`` None trains all ``max_epochs`` (GCN's 200 epochs)."""

    lr: float
    weight_decay: float
    max_epochs: int
    patience: int | None = None


GAT_RECIPE = NodeClassifierRecipe(lr=0.005, weight_decay=5e-4, max_epochs=100_000, patience=100)  # Veličković et al.
GCN_RECIPE = NodeClassifierRecipe(lr=0.01, weight_decay=5e-4, max_epochs=200)  # Kipf & Welling


@dataclass
class NodeClassifierResult:
    """Test accuracy of the checkpoint chosen on validation, and what the run did."""

    test_acc: float
    val_acc: float
    best_epoch: int
    epochs: int
    seconds: float
    val_loss_history: list[float] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs, 1)


Recipe, TrainResult = NodeClassifierRecipe, NodeClassifierResult  # the names chapter 7 and the tests import


def train_node_classifier(model: nn.Module, data, x: Tensor | None = None,
                          recipe: NodeClassifierRecipe = GAT_RECIPE, desc: str = "training",
                          threads: int | None = 1) -> NodeClassifierResult:
    """Train ``model(x, edge_index)`` on ``data.train_mask`` with the GAT paper's early stopping.

    Each epoch takes one Adam step on the training nodes, then evaluates every node once without dropout.
    As in the paper's code, the patience counter resets whenever validation accuracy or loss reaches its best
    so far, and the checkpoint (whose test accuracy is reported) is the last epoch at which both did.
    ``x`` defaults to ``data.x``; pass `attnbook.graph.to_sparse_csr` of it to use the sparse path. ``threads``
    sets PyTorch's threads while training (restored after; None keeps the current setting): Cora's tensors are
    small enough that a second thread gains little and, on a busy machine, costs many times what it saves.
    The model's optional ``parameter_groups(weight_decay)`` says which parameters get L2 (all by default).
    """
    x = data.x if x is None else x
    groups = model.parameter_groups(recipe.weight_decay) if hasattr(model, "parameter_groups") else \
        [{"params": list(model.parameters()), "weight_decay": recipe.weight_decay}]
    optimizer = torch.optim.Adam(groups, lr=recipe.lr)
    y, train, val, test = data.y, data.train_mask, data.val_mask, data.test_mask
    result = NodeClassifierResult(test_acc=math.nan, val_acc=math.nan, best_epoch=-1, epochs=0, seconds=0.0)
    best_acc, best_loss, patience = -1.0, math.inf, Patience(recipe.patience)

    def loss_fn(_: None) -> Tensor:
        return F.cross_entropy(model(x, data.edge_index)[train], y[train])

    def evaluate(epoch: int, loss: float) -> bool:
        """Score every node without dropout; keep the checkpoint; True when patience has run out."""
        nonlocal best_acc, best_loss
        with torch.no_grad():
            logits = model(x, data.edge_index)
        val_loss = F.cross_entropy(logits[val], y[val]).item()
        predicted = logits.argmax(dim=1)
        val_acc = (predicted[val] == y[val]).float().mean().item()
        result.val_loss_history.append(val_loss)
        result.epochs = epoch + 1
        if val_acc >= best_acc and val_loss <= best_loss:
            result.val_acc, result.best_epoch = val_acc, epoch
            result.test_acc = (predicted[test] == y[test]).float().mean().item()
        improved = val_acc >= best_acc or val_loss <= best_loss
        best_acc, best_loss = max(val_acc, best_acc), min(val_loss, best_loss)
        return patience.update(improved)

    with repro.threads(threads):
        start = time.perf_counter()
        fit(model, optimizer, lambda: (None,), loss_fn, recipe.max_epochs, on_epoch_end=evaluate, desc=desc)
        result.seconds = time.perf_counter() - start
    return result
