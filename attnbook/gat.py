"""Graph attention networks (Veličković et al. 2018): attention restricted to each node's neighbourhood.

A GAT layer maps node features ``x`` (N, F) to ``(N, heads * out)`` (concatenated heads) or ``(N, out)``
(averaged heads). For every edge j → i, and every head,

    e_ij = LeakyReLU(a_dstᵀ W h_i + a_srcᵀ W h_j)                       (the paper's eq. 1 with a = [a_dst ‖ a_src])
    α_ij = softmax_j(e_ij) over j ∈ N(i) ∪ {i}                          (eq. 2-3)
    h'_i = Σ_j α_ij W h_j                                                (eq. 4)

which is `attnbook.core.attention` with queries = keys = values = W h, the score above, and the adjacency as the
mask. `GATLayer.forward_dense` computes exactly that (an (N, N) matrix: small graphs, teaching);
`GATLayer.forward` computes the same numbers over an edge list with a segment softmax (real graphs). The
layer's interface follows `torch_geometric.nn.GATConv`: ``edge_index`` is a ``(2, E)`` LongTensor of
source → target pairs and self-loops are added inside (`attnbook.graph`). Chapter 7 trains it with
`attnbook.node_classification.train_node_classifier`.

Shape legend: N nodes, E edges, F input features, H heads, C features per head.
"""

from __future__ import annotations

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.core import attention, edge_attention, segment_softmax
from attnbook.errors import ShapeError, check_tensor
from attnbook.graph import (add_self_loops, check_edge_index, dense_adjacency, feature_dropout, glorot_,
                            sparse_linear, to_sparse_csr)
from attnbook.node_classification import (GAT_RECIPE, GCN_RECIPE, NodeClassifierRecipe, NodeClassifierResult,
                                          Recipe, TrainResult, train_node_classifier)

# Names that moved to `attnbook.graph` and `attnbook.node_classification` stay importable from here (chapter 7,
# the tests and the GAT benchmark import them from ``attnbook.gat``).
__all__ = [
    "GAT", "GAT_RECIPE", "GCN_RECIPE", "GATLayer", "GATScore", "NodeClassifierRecipe", "NodeClassifierResult",
    "Recipe", "TrainResult", "add_self_loops", "check_edge_index", "dense_adjacency", "feature_dropout", "glorot_",
    "neighbourhood_entropy", "segment_softmax", "sparse_linear", "to_sparse_csr", "train_node_classifier",
    "uniform_entropy",
]

class GATScore(nn.Module):
    """The GAT scorer: a single-layer feed-forward network on [W h_i ‖ W h_j] with a LeakyReLU.

    Because the layer is linear before the LeakyReLU, aᵀ[W h_i ‖ W h_j] = a_dstᵀ W h_i + a_srcᵀ W h_j splits
    into one term per node, computed once per node instead of once per edge. Parameters: att_src, att_dst (H, C).
    """

    def __init__(self, heads: int, channels: int, negative_slope: float = 0.2):
        super().__init__()
        self.heads, self.channels, self.negative_slope = heads, channels, negative_slope
        self.att_src = nn.Parameter(glorot_(torch.empty(heads, channels)))
        self.att_dst = nn.Parameter(glorot_(torch.empty(heads, channels)))

    def node_terms(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """h (N, H, C) → (a_srcᵀ W h_j, a_dstᵀ W h_i), each (N, H)."""
        return (h * self.att_src).sum(-1), (h * self.att_dst).sum(-1)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        """Dense scores for the core: query (H, N_q, C) targets, key (H, N_k, C) sources → (H, N_q, N_k)."""
        for name, t in (("query", query), ("key", key)):
            if t.ndim != 3 or t.shape[0] != self.heads or t.shape[2] != self.channels:
                raise ShapeError(f"{name}: expected shape ({self.heads}, N, {self.channels}), got {tuple(t.shape)}")
        dst = (query * self.att_dst[:, None, :]).sum(-1)  # (H, N_q)
        src = (key * self.att_src[:, None, :]).sum(-1)  # (H, N_k)
        return F.leaky_relu(dst[:, :, None] + src[:, None, :], self.negative_slope)


class GATLayer(nn.Module):
    """A graph attention layer with PyG's interface: ``GATLayer(in, out, heads, concat, negative_slope, dropout)``.

    x (N, in_features) dense or ``sparse_csr``, edge_index (2, E) source → target → (N, heads·out) if
    ``concat`` else (N, out). ``dropout`` drops normalised attention coefficients in training, as in the paper
    and in `GATConv`; dropout on the layer's input belongs to the model (`GAT`).
    """

    def __init__(self, in_features: int, out_features: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if heads < 1 or out_features < 1 or in_features < 1:
            raise ValueError(f"heads, in_features, out_features: expected positive sizes, got "
                             f"{heads}, {in_features}, {out_features}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        self.in_features, self.out_features, self.heads = in_features, out_features, heads
        self.concat, self.dropout = concat, dropout
        self.lin = nn.Linear(in_features, heads * out_features, bias=False)
        glorot_(self.lin.weight)
        self.score = GATScore(heads, out_features, negative_slope)
        size = heads * out_features if concat else out_features
        self.bias = nn.Parameter(torch.zeros(size)) if bias else None

    def project(self, x: Tensor) -> Tensor:
        """The shared linear map W: x (N, in_features) → (N, H, C)."""
        check_tensor("x", x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ShapeError(f"x: expected shape (N, {self.in_features}), got {tuple(x.shape)}")
        return sparse_linear(x, self.lin.weight).view(-1, self.heads, self.out_features)

    def combine(self, out: Tensor) -> Tensor:
        """Heads (N, H, C) → concatenated (N, H·C) or averaged (N, C), plus the bias."""
        out = out.reshape(out.shape[0], -1) if self.concat else out.mean(dim=1)
        return out if self.bias is None else out + self.bias

    def forward(self, x: Tensor, edge_index: Tensor, return_attention_weights: bool = False):
        """Sparse form over the edge list. Returns out, or (out, (edge_index with self-loops, alpha (E', H)))."""
        h = self.project(x)  # (N, H, C)
        n = h.shape[0]
        edges = add_self_loops(check_edge_index(edge_index, n), n)
        src, dst = edges
        term_src, term_dst = self.score.node_terms(h)  # (N, H) each
        scores = F.leaky_relu(term_src[src] + term_dst[dst], self.score.negative_slope)  # (E', H)
        out, alpha = edge_attention(scores, h[src], dst, n, self.dropout, self.training)  # (N, H, C), (E', H)
        out = self.combine(out)
        return (out, (edges, alpha)) if return_attention_weights else out

    def forward_dense(self, x: Tensor, adjacency: Tensor) -> tuple[Tensor, Tensor]:
        """Dense form: the core's attention with the adjacency as its mask.

        adjacency (N, N) boolean, ``adjacency[i, j]`` True when i attends j (see `dense_adjacency`; include the
        self-loops). Returns out and the weights (H, N, N), rows summing to one over each neighbourhood. It
        agrees with `forward` on graphs without repeated edges (a mask cannot count an edge twice).
        """
        h = self.project(x).transpose(0, 1)  # (H, N, C): heads act as the batch axis of the core
        n = h.shape[1]
        if tuple(adjacency.shape) != (n, n):
            raise ShapeError(f"adjacency: expected shape ({n}, {n}), got {tuple(adjacency.shape)}")
        out, weights = attention(h, h, h, mask=adjacency, score=self.score,
                                 dropout=self.dropout if self.training else 0.0)
        return self.combine(out.transpose(0, 1)), weights

    @classmethod
    def from_reference(cls, conv: nn.Module) -> "GATLayer":
        """Copy a `torch_geometric.nn.GATConv` (shared weights, self-loops on, no edge features, no residual)."""
        from torch_geometric.nn import GATConv

        if not isinstance(conv, GATConv):
            raise TypeError(f"conv: expected torch_geometric.nn.GATConv, got {type(conv).__name__}")
        if conv.lin is None or conv.edge_dim is not None or conv.res is not None or not conv.add_self_loops:
            raise ValueError("conv: only GATConv with one shared linear map, add_self_loops=True, no edge_dim "
                             "and no residual has a counterpart here")
        layer = cls(conv.in_channels, conv.out_channels, conv.heads, conv.concat, conv.negative_slope,
                    conv.dropout, bias=conv.bias is not None)
        with torch.no_grad():
            layer.lin.weight.copy_(conv.lin.weight)
            layer.score.att_src.copy_(conv.att_src.view(conv.heads, conv.out_channels))
            layer.score.att_dst.copy_(conv.att_dst.view(conv.heads, conv.out_channels))
            if layer.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer


# ---------------------------------------------------------------------------------------------------------
# The paper's model.


class GAT(nn.Module):
    """The two-layer GAT of Veličković et al. (2018) for transductive node classification.

    dropout → GATLayer(in, hidden, heads, concat) → ELU → dropout → GATLayer(hidden·heads, classes, out_heads,
    averaged). Cora: hidden 8, heads 8, out_heads 1, dropout 0.6 on inputs and attention coefficients.
    x (N, in_features) dense or ``sparse_csr``, edge_index (2, E) → logits (N, num_classes).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 8, heads: int = 8,
                 out_heads: int = 1, dropout: float = 0.6, negative_slope: float = 0.2):
        super().__init__()
        self.dropout = dropout
        self.conv1 = GATLayer(in_features, hidden, heads, True, negative_slope, dropout)
        self.conv2 = GATLayer(hidden * heads, num_classes, out_heads, False, negative_slope, dropout)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = feature_dropout(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, training=self.training)
        return self.conv2(x, edge_index)

    @torch.no_grad()
    def attention_weights(self, x: Tensor, edge_index: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Evaluation-mode attention of both layers: [(edge_index with loops, alpha (E', H)), ...]."""
        was_training = self.training
        self.eval()
        hidden, first = self.conv1(x, edge_index, return_attention_weights=True)
        _, second = self.conv2(F.elu(hidden), edge_index, return_attention_weights=True)
        self.train(was_training)
        return [first, second]

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """L2 on every parameter, as in the GAT paper."""
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]




# ---------------------------------------------------------------------------------------------------------
# Reading the attention: how far each neighbourhood's weights are from uniform.


def neighbourhood_entropy(alpha: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Entropy −Σ_j α_ij log α_ij of each node's attention distribution: alpha (E, H) → (N, H), in nats."""
    terms = torch.where(alpha > 0, -alpha * alpha.clamp_min(1e-30).log(), torch.zeros_like(alpha))
    return torch.zeros(num_nodes, *alpha.shape[1:], dtype=alpha.dtype).index_add_(0, index, terms)


def uniform_entropy(index: Tensor, num_nodes: int) -> Tensor:
    """Entropy log(size of N(i) ∪ {i}) of uniform attention over each neighbourhood: (N,), for edges with loops."""
    return torch.bincount(index, minlength=num_nodes).clamp_min(1).double().log().float()


