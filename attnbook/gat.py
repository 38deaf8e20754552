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
source → target pairs and self-loops are added inside.

Shape legend: N nodes, E edges, F input features, H heads, C features per head.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.core import attention, edge_attention, segment_softmax  # noqa: F401 (segment_softmax re-exported)
from attnbook import repro
from attnbook.errors import DTypeError, ShapeError, check_ndim, check_tensor
from attnbook.train import progress

# ---------------------------------------------------------------------------------------------------------
# Edge lists.


def check_edge_index(edge_index: object, num_nodes: int) -> Tensor:
    """Check that ``edge_index`` is a (2, E) integer tensor of node ids in ``0..num_nodes-1``; return it."""
    edge_index = check_tensor("edge_index", edge_index)
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise DTypeError(f"edge_index: expected an integer (torch.long) tensor, got {edge_index.dtype}")
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ShapeError(f"edge_index: expected shape (2, E) of source→target pairs, got {tuple(edge_index.shape)}")
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise ValueError(f"edge_index: expected node ids in 0..{num_nodes - 1}, got "
                         f"{int(edge_index.min())}..{int(edge_index.max())}")
    return edge_index.long()


def add_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Drop existing self-loops and append (i, i) for every node, in PyG's order: (2, E').

    Every node, isolated ones included, then attends at least to itself.
    """
    kept = edge_index[:, edge_index[0] != edge_index[1]]
    loops = torch.arange(num_nodes, device=edge_index.device).expand(2, num_nodes)
    return torch.cat([kept, loops], dim=1)


def dense_adjacency(edge_index: Tensor, num_nodes: int, self_loops: bool = True) -> Tensor:
    """(N, N) boolean mask with ``mask[i, j]`` True when node i may attend node j (an edge j → i)."""
    mask = torch.zeros(num_nodes, num_nodes, dtype=torch.bool, device=edge_index.device)
    mask[edge_index[1], edge_index[0]] = True
    if self_loops:
        mask.fill_diagonal_(True)
    return mask


def neighbourhood_entropy(alpha: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Entropy −Σ_j α_ij log α_ij of each node's attention distribution: alpha (E, H) → (N, H), in nats."""
    terms = torch.where(alpha > 0, -alpha * alpha.clamp_min(1e-30).log(), torch.zeros_like(alpha))
    return torch.zeros(num_nodes, *alpha.shape[1:], dtype=alpha.dtype).index_add_(0, index, terms)


def uniform_entropy(index: Tensor, num_nodes: int) -> Tensor:
    """Entropy log(|N(i) ∪ {i}|) of uniform attention over each neighbourhood: (N,), for edges with loops."""
    return torch.bincount(index, minlength=num_nodes).clamp_min(1).double().log().float()


# ---------------------------------------------------------------------------------------------------------
# Sparse node features.


def feature_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout on node features, dense or ``sparse_csr``.

    For a sparse matrix only the stored values are dropped and rescaled by 1/(1 − p). Dropout multiplies each
    entry by an independent keep/(1 − p) factor and a zero stays zero whatever its factor, so this has exactly
    the distribution of dense dropout while drawing ~1% as many random numbers on Cora.
    """
    if not training or p == 0.0:
        return x
    if x.layout != torch.sparse_csr:
        return F.dropout(x, p, training=True)
    return _csr(x.crow_indices(), x.col_indices(), F.dropout(x.values(), p, training=True), x.shape)


def sparse_linear(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight.T`` for x (N, F) dense or ``sparse_csr``; weight is (out, F), as in `nn.Linear`.

    The sparse product costs O(nnz · out) instead of O(N · F · out), and so does its gradient with respect
    to ``weight`` (xᵀ times the output's gradient).
    """
    if x.layout != torch.sparse_csr:
        return F.linear(x, weight)
    return x @ weight.t()


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: torch.Size) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the three operations used here are stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape)


def to_sparse_csr(x: Tensor) -> Tensor:
    """A dense (N, F) feature matrix as ``sparse_csr`` (without PyTorch's beta warning)."""
    check_ndim("x", check_tensor("x", x), 2, "(N, F)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return x.to_sparse_csr()


# ---------------------------------------------------------------------------------------------------------
# The layer.


def glorot_(tensor: Tensor) -> Tensor:
    """Glorot-uniform init over the last two axes (PyG's ``glorot``, the GAT paper's initialisation)."""
    bound = math.sqrt(6.0 / (tensor.shape[-2] + tensor.shape[-1]))
    return nn.init.uniform_(tensor, -bound, bound)


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
# The paper's training protocol: full-batch Adam with early stopping on the validation set.


@dataclass(frozen=True)
class Recipe:
    """Optimiser and stopping rule. ``patience`` None trains all ``max_epochs`` (GCN's 200 epochs)."""

    lr: float
    weight_decay: float
    max_epochs: int
    patience: int | None = None


GAT_RECIPE = Recipe(lr=0.005, weight_decay=5e-4, max_epochs=100_000, patience=100)  # Veličković et al.
GCN_RECIPE = Recipe(lr=0.01, weight_decay=5e-4, max_epochs=200)  # Kipf & Welling


@dataclass
class TrainResult:
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


def train_node_classifier(model: nn.Module, data, x: Tensor | None = None, recipe: Recipe = GAT_RECIPE,
                          desc: str = "training", threads: int | None = 1) -> TrainResult:
    """Train ``model(x, edge_index)`` on ``data.train_mask`` with the GAT paper's early stopping.

    Each epoch takes one Adam step on the training nodes, then evaluates every node once without dropout.
    As in the paper's code, the patience counter resets whenever validation accuracy or loss reaches its best
    so far, and the checkpoint (whose test accuracy is reported) is the last epoch at which both did.
    ``x`` defaults to ``data.x``; pass `to_sparse_csr(data.x)` to use the sparse path. ``threads`` sets
    PyTorch's threads while training (restored after; None keeps the current setting): Cora's tensors are
    small enough that a second thread gains little and, on a busy machine, costs many times what it saves.
    """
    with repro.threads(threads):
        return _train(model, data, data.x if x is None else x, recipe, desc)


def _train(model: nn.Module, data, x: Tensor, recipe: Recipe, desc: str) -> TrainResult:
    """The loop of `train_node_classifier`, at whatever thread count is set."""
    groups = model.parameter_groups(recipe.weight_decay) if hasattr(model, "parameter_groups") else \
        [{"params": list(model.parameters()), "weight_decay": recipe.weight_decay}]
    optimizer = torch.optim.Adam(groups, lr=recipe.lr)
    y, train, val, test = data.y, data.train_mask, data.val_mask, data.test_mask
    best_acc, best_loss, waited = -1.0, math.inf, 0
    result = TrainResult(test_acc=math.nan, val_acc=math.nan, best_epoch=-1, epochs=0, seconds=0.0)
    start = time.perf_counter()
    for epoch in progress(range(recipe.max_epochs), desc=desc):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x, data.edge_index)[train], y[train]).backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x, data.edge_index)
        val_loss = F.cross_entropy(logits[val], y[val]).item()
        predicted = logits.argmax(dim=1)
        val_acc = (predicted[val] == y[val]).float().mean().item()
        result.val_loss_history.append(val_loss)
        result.epochs = epoch + 1
        if val_acc >= best_acc or val_loss <= best_loss:
            if val_acc >= best_acc and val_loss <= best_loss:
                result.val_acc, result.best_epoch = val_acc, epoch
                result.test_acc = (predicted[test] == y[test]).float().mean().item()
            best_acc, best_loss, waited = max(val_acc, best_acc), min(val_loss, best_loss), 0
        else:
            waited += 1
            if recipe.patience is not None and waited >= recipe.patience:
                break
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
