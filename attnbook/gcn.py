"""Baselines for chapter 7: the graph convolutional network (Kipf & Welling 2017) and a plain MLP.

A GCN layer averages neighbours with fixed weights set by the degrees, ĥ_i = Σ_j (d_i d_j)^(-1/2) W h_j over
j ∈ N(i) ∪ {i}; a GAT layer learns those weights. The MLP ignores the graph altogether. Both take and return
the same shapes as `attnbook.gat.GAT`: x (N, F) dense or ``sparse_csr``, edge_index (2, E) → (N, classes),
and all three train with `attnbook.node_classification.train_node_classifier`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.errors import ShapeError, check_shape, check_tensor
from attnbook.graph import add_self_loops, check_edge_index, feature_dropout, glorot_, sparse_linear


def gcn_norm(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Self-loops added and symmetric weights (d_src d_dst)^(-1/2): ((2, E') edges, (E',) weights)."""
    edges = add_self_loops(edge_index, num_nodes)
    degree = torch.bincount(edges[1], minlength=num_nodes).float()
    inv_sqrt = degree.pow(-0.5)
    return edges, inv_sqrt[edges[0]] * inv_sqrt[edges[1]]


class GCNLayer(nn.Module):
    """One graph convolution D^(-1/2) (A + I) D^(-1/2) X W + b, with PyG's `GCNConv` interface.

    x (N, in_features) dense or ``sparse_csr``, edge_index (2, E) source → target → (N, out_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.lin = nn.Linear(in_features, out_features, bias=False)
        glorot_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        check_tensor("x", x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ShapeError(f"x: expected shape (N, {self.in_features}), got {tuple(x.shape)}")
        h = sparse_linear(x, self.lin.weight)  # (N, out)
        edges, weight = gcn_norm(check_edge_index(edge_index, h.shape[0]), h.shape[0])
        out = torch.zeros_like(h).index_add_(0, edges[1], weight[:, None] * h[edges[0]])
        return out if self.bias is None else out + self.bias

    @classmethod
    def from_reference(cls, conv: nn.Module) -> "GCNLayer":
        """Copy a `torch_geometric.nn.GCNConv` with its defaults (self-loops, symmetric normalisation)."""
        from torch_geometric.nn import GCNConv

        if not isinstance(conv, GCNConv):
            raise TypeError(f"conv: expected torch_geometric.nn.GCNConv, got {type(conv).__name__}")
        if not (conv.add_self_loops and conv.normalize) or conv.improved:
            raise ValueError("conv: only GCNConv with add_self_loops=True, normalize=True, improved=False")
        layer = cls(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            layer.lin.weight.copy_(conv.lin.weight)
            if layer.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer


class GCN(nn.Module):
    """Kipf & Welling's two-layer GCN: dropout → GCNLayer → ReLU → dropout → GCNLayer (16 hidden, dropout 0.5)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 16, dropout: float = 0.5):
        super().__init__()
        self.dropout = dropout
        self.conv1 = GCNLayer(in_features, hidden)
        self.conv2 = GCNLayer(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.relu(self.conv1(feature_dropout(x, self.dropout, self.training), edge_index))
        return self.conv2(F.dropout(x, self.dropout, training=self.training), edge_index)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """L2 on the first layer only, as in Kipf & Welling's code."""
        return [{"params": list(self.conv1.parameters()), "weight_decay": weight_decay},
                {"params": list(self.conv2.parameters()), "weight_decay": 0.0}]


class MLP(nn.Module):
    """A two-layer perceptron on node features alone, trained like the GCN: the no-graph baseline.

    ``edge_index`` is accepted and ignored, so the three models share one training loop.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 16, dropout: float = 0.5):
        super().__init__()
        self.dropout = dropout
        self.lin1 = nn.Linear(in_features, hidden)
        self.lin2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor | None = None) -> Tensor:
        check_shape("x", check_tensor("x", x), (None, self.lin1.in_features))
        x = feature_dropout(x, self.dropout, self.training)
        x = F.relu(sparse_linear(x, self.lin1.weight) + self.lin1.bias)
        return self.lin2(F.dropout(x, self.dropout, training=self.training))

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """L2 on the first layer only, as for the GCN."""
        return [{"params": list(self.lin1.parameters()), "weight_decay": weight_decay},
                {"params": list(self.lin2.parameters()), "weight_decay": 0.0}]
