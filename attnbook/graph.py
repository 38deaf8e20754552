"""Graph plumbing shared by chapter 7's models (`attnbook.gat`, `attnbook.gcn`): edge lists, sparse features.

Edge lists follow PyTorch Geometric: ``edge_index`` is a ``(2, E)`` LongTensor of source → target pairs. Node
features ``x`` are ``(N, F)``, dense or ``sparse_csr`` (Cora's are 98.7% zeros): `sparse_linear` and
`feature_dropout` work on both. `glorot_` is the initialisation both layers use.

Shape legend: N nodes, E edges, F input features.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.errors import DTypeError, ShapeError, check_ndim, check_tensor

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


