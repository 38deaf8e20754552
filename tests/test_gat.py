"""GAT and GCN layers against PyTorch Geometric, the dense and sparse forms against each other, and errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.nn import GATConv, GCNConv

from attnbook.errors import DTypeError, ShapeError
from attnbook.gat import (
    GAT,
    Recipe,
    GATLayer,
    GATScore,
    add_self_loops,
    dense_adjacency,
    feature_dropout,
    neighbourhood_entropy,
    segment_softmax,
    sparse_linear,
    to_sparse_csr,
    train_node_classifier,
    uniform_entropy,
)
from attnbook.gcn import GCN, MLP, GCNLayer

TOL = dict(atol=1e-5, rtol=1e-5)


def random_graph(num_nodes, num_edges, generator, isolated=2):
    """A random directed edge list whose last ``isolated`` nodes have no edges, with one explicit self-loop."""
    active = num_nodes - isolated
    edges = torch.randint(0, active, (2, num_edges), generator=generator)
    edges[:, 0] = 0  # a self-loop (0 → 0) that the layers must replace, not duplicate
    return edges


def reference_gat(in_features, out_features, heads, concat, seed):
    torch.manual_seed(seed)
    conv = GATConv(in_features, out_features, heads=heads, concat=concat, negative_slope=0.2, dropout=0.0)
    torch.nn.init.normal_(conv.bias)  # PyG initialises the bias to zero; make it count
    return conv.eval()


# ------------------------------------------------------------------------------------ against PyG


@pytest.mark.parametrize("heads", [1, 2, 8])
@pytest.mark.parametrize("concat", [True, False])
def test_gat_layer_matches_pyg_output_and_attention(heads, concat):
    g = torch.Generator().manual_seed(heads)
    x, edges = torch.randn(11, 7, generator=g), random_graph(11, 30, g, isolated=3)
    conv = reference_gat(7, 5, heads, concat, seed=heads)
    layer = GATLayer.from_reference(conv).eval()
    expected, (expected_edges, expected_alpha) = conv(x, edges, return_attention_weights=True)
    out, (edges_with_loops, alpha) = layer(x, edges, return_attention_weights=True)
    assert out.shape == (11, heads * 5 if concat else 5)
    torch.testing.assert_close(out, expected, **TOL)
    assert torch.equal(edges_with_loops, expected_edges)
    torch.testing.assert_close(alpha, expected_alpha, **TOL)


def test_gat_layer_isolated_node_attends_only_itself():
    g = torch.Generator().manual_seed(3)
    x, edges = torch.randn(6, 4, generator=g), torch.tensor([[0, 1, 2], [1, 2, 0]])  # nodes 3, 4, 5 isolated
    conv = reference_gat(4, 3, 2, True, seed=3)
    layer = GATLayer.from_reference(conv).eval()
    out, (loops, alpha) = layer(x, edges, return_attention_weights=True)
    is_isolated_loop = (loops[0] == loops[1]) & (loops[1] >= 3)
    torch.testing.assert_close(alpha[is_isolated_loop], torch.ones(3, 2))
    # an isolated node's output is its own projection plus the bias
    torch.testing.assert_close(out[3:], layer.lin(x[3:]) + layer.bias, **TOL)
    torch.testing.assert_close(out, conv(x, edges), **TOL)


def test_gat_layer_gradients_match_pyg():
    g = torch.Generator().manual_seed(4)
    x, edges = torch.randn(9, 6, generator=g), random_graph(9, 25, g)
    conv = reference_gat(6, 4, 3, True, seed=4)
    layer = GATLayer.from_reference(conv).eval()
    conv(x, edges).pow(2).sum().backward()
    layer(x, edges).pow(2).sum().backward()
    torch.testing.assert_close(layer.lin.weight.grad, conv.lin.weight.grad, **TOL)
    torch.testing.assert_close(layer.score.att_src.grad, conv.att_src.grad.view(3, 4), **TOL)
    torch.testing.assert_close(layer.score.att_dst.grad, conv.att_dst.grad.view(3, 4), **TOL)


class PyGGAT(torch.nn.Module):
    """The paper's two-layer GAT written with PyG's `GATConv`, as in PyG's ``examples/gat.py``."""

    def __init__(self, in_features, num_classes, hidden, heads, out_heads, dropout):
        super().__init__()
        self.dropout = dropout
        self.conv1 = GATConv(in_features, hidden, heads=heads, dropout=dropout)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=out_heads, concat=False, dropout=dropout)

    def forward(self, x, edge_index):
        x = F.dropout(x, self.dropout, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, training=self.training)
        return self.conv2(x, edge_index)


@pytest.mark.parametrize("out_heads", [1, 3])
def test_gat_model_matches_a_pyg_model_with_copied_weights(out_heads):
    g = torch.Generator().manual_seed(20 + out_heads)
    x, edges = torch.rand(17, 12, generator=g), random_graph(17, 50, g)
    x[x < 0.6] = 0  # sparse bag-of-words-like features, also fed as CSR
    torch.manual_seed(out_heads)
    reference = PyGGAT(12, 5, hidden=4, heads=6, out_heads=out_heads, dropout=0.6).eval()
    for conv in (reference.conv1, reference.conv2):
        torch.nn.init.normal_(conv.bias)
    model = GAT(12, 5, hidden=4, heads=6, out_heads=out_heads, dropout=0.6).eval()
    model.conv1 = GATLayer.from_reference(reference.conv1)
    model.conv2 = GATLayer.from_reference(reference.conv2)
    model.eval()
    expected = reference(x, edges)
    torch.testing.assert_close(model(x, edges), expected, **TOL)
    torch.testing.assert_close(model(to_sparse_csr(x), edges), expected, **TOL)
    for (_, alpha), conv in zip(model.attention_weights(x, edges), (reference.conv1, reference.conv2)):
        assert alpha.shape[1] == conv.heads
    _, (_, expected_alpha) = reference.conv2(F.elu(reference.conv1(x, edges)), edges,
                                             return_attention_weights=True)
    torch.testing.assert_close(model.attention_weights(x, edges)[1][1], expected_alpha, **TOL)
    F.cross_entropy(expected, torch.arange(17) % 5).backward()
    F.cross_entropy(model(x, edges), torch.arange(17) % 5).backward()
    for ours, theirs in ((model.conv1, reference.conv1), (model.conv2, reference.conv2)):
        torch.testing.assert_close(ours.lin.weight.grad, theirs.lin.weight.grad, **TOL)
        torch.testing.assert_close(ours.score.att_src.grad, theirs.att_src.grad.view_as(ours.score.att_src), **TOL)
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, **TOL)


def test_gcn_layer_matches_pyg():
    g = torch.Generator().manual_seed(5)
    x, edges = torch.randn(10, 6, generator=g), random_graph(10, 24, g)
    torch.manual_seed(5)
    conv = GCNConv(6, 4)
    torch.nn.init.normal_(conv.bias)
    torch.testing.assert_close(GCNLayer.from_reference(conv)(x, edges), conv(x, edges), **TOL)


def test_from_reference_rejects_other_modules():
    with pytest.raises(TypeError, match="conv: expected torch_geometric.nn.GATConv"):
        GATLayer.from_reference(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="add_self_loops=True"):
        GATLayer.from_reference(GATConv(3, 2, add_self_loops=False))
    with pytest.raises(TypeError, match="conv: expected torch_geometric.nn.GCNConv"):
        GCNLayer.from_reference(GATConv(3, 2))


# ------------------------------------------------------------------------------------ dense = sparse = core


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), e=st.integers(0, 40), heads=st.integers(1, 4), concat=st.booleans(),
       seed=st.integers(0, 10_000))
def test_dense_and_sparse_forms_agree(n, e, heads, concat, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    edges = torch.randint(0, n, (2, e), generator=g).unique(dim=1)  # a simple graph: an (N, N) mask has no multi-edges
    torch.manual_seed(seed)
    layer = GATLayer(3, 4, heads=heads, concat=concat).eval()
    out, (loops, alpha) = layer(x, edges, return_attention_weights=True)
    dense_out, weights = layer.forward_dense(x, dense_adjacency(edges, n))
    torch.testing.assert_close(dense_out, out, **TOL)
    # the dense weights, read at each edge (target row, source column), are the sparse coefficients ...
    torch.testing.assert_close(weights[:, loops[1], loops[0]].T, alpha, **TOL)
    # ... and every row sums to one over the neighbourhood, with nothing outside it
    torch.testing.assert_close(weights.sum(-1), torch.ones(heads, n), **TOL)
    assert not weights.masked_select(~dense_adjacency(edges, n).expand_as(weights)).any()


def test_score_is_leaky_relu_of_the_concatenation():
    torch.manual_seed(6)
    score = GATScore(heads=2, channels=3, negative_slope=0.2)
    h = torch.randn(2, 4, 3)
    a = torch.cat([score.att_dst, score.att_src], dim=-1)  # the paper's a = [a_dst ‖ a_src], (H, 2C)
    pairs = torch.cat([h[:, :, None, :].expand(2, 4, 4, 3), h[:, None, :, :].expand(2, 4, 4, 3)], dim=-1)
    expected = F.leaky_relu((pairs * a[:, None, None, :]).sum(-1), 0.2)
    torch.testing.assert_close(score(h, h), expected, **TOL)


def test_segment_softmax_matches_dense_softmax_and_is_stable():
    index = torch.tensor([0, 0, 1, 1, 1, 3])
    scores = torch.tensor([[1.0], [2.0], [1000.0], [1001.0], [-5.0], [7.0]])
    alpha = segment_softmax(scores, index, num_nodes=4)
    torch.testing.assert_close(alpha[:2, 0], torch.softmax(torch.tensor([1.0, 2.0]), 0))
    torch.testing.assert_close(alpha[2:5, 0], torch.softmax(torch.tensor([1000.0, 1001.0, -5.0]), 0))
    assert alpha[5, 0] == 1.0 and torch.isfinite(alpha).all()


def test_self_loops_replace_existing_ones():
    edges = add_self_loops(torch.tensor([[0, 1, 1], [1, 1, 0]]), num_nodes=3)
    assert edges.tolist() == [[0, 1, 0, 1, 2], [1, 0, 0, 1, 2]]


def test_layer_is_permutation_equivariant():
    g = torch.Generator().manual_seed(7)
    x, edges = torch.randn(8, 3, generator=g), random_graph(8, 20, g)
    torch.manual_seed(7)
    layer = GATLayer(3, 2, heads=2).eval()
    perm = torch.randperm(8, generator=g)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(8)
    torch.testing.assert_close(layer(x[perm], inverse[edges]), layer(x, edges)[perm], **TOL)


# ------------------------------------------------------------------------------------ sparse features


def test_sparse_features_give_the_dense_result():
    g = torch.Generator().manual_seed(8)
    x = (torch.rand(12, 30, generator=g) < 0.1).float() * torch.rand(12, 30, generator=g)
    x[3] = 0.0  # an empty row
    weight = torch.randn(5, 30, generator=g, requires_grad=True)
    dense = sparse_linear(x, weight)
    torch.testing.assert_close(dense, x @ weight.T, **TOL)
    sparse = sparse_linear(to_sparse_csr(x), weight)
    torch.testing.assert_close(sparse, dense, **TOL)
    (grad_dense,) = torch.autograd.grad(dense.sum(), weight)
    (grad_sparse,) = torch.autograd.grad(sparse.sum(), weight)
    torch.testing.assert_close(grad_sparse, grad_dense, **TOL)
    torch.manual_seed(8)
    model = GAT(30, 3, hidden=4, heads=2).eval()
    edges = random_graph(12, 30, g)
    torch.testing.assert_close(model(to_sparse_csr(x), edges), model(x, edges), **TOL)


def test_sparse_dropout_has_dense_dropouts_distribution():
    x = torch.zeros(200, 50)
    x[::3, ::2] = 1.0
    sparse = to_sparse_csr(x)
    torch.manual_seed(9)
    dropped = feature_dropout(sparse, 0.6, training=True).to_dense()
    nonzero = x != 0
    assert not dropped[~nonzero].any()  # zeros stay zeros
    assert set(dropped[nonzero].unique().tolist()) <= {0.0, 1.0 / 0.4}
    kept = (dropped[nonzero] != 0).float().mean().item()
    n = int(nonzero.sum())
    assert abs(kept - 0.4) < 4 * math.sqrt(0.24 / n)  # within four standard errors of the keep probability
    assert feature_dropout(sparse, 0.6, training=False) is sparse


# ------------------------------------------------------------------------------------ models and training


def test_models_shapes_and_attention_weights():
    g = torch.Generator().manual_seed(10)
    x, edges = torch.randn(15, 9, generator=g), random_graph(15, 40, g)
    model = GAT(9, 4, hidden=3, heads=5)
    assert model(x, edges).shape == (15, 4)
    first, second = model.attention_weights(x, edges)
    assert first[1].shape == (first[0].shape[1], 5) and second[1].shape == (second[0].shape[1], 1)
    for loops, alpha in (first, second):
        torch.testing.assert_close(torch.zeros(15, alpha.shape[1]).index_add_(0, loops[1], alpha),
                                   torch.ones(15, alpha.shape[1]), **TOL)
    assert model.training  # restored
    assert GCN(9, 4)(x, edges).shape == (15, 4) and MLP(9, 4)(x, edges).shape == (15, 4)


def test_entropy_of_uniform_attention_is_log_degree():
    index = torch.tensor([0, 0, 0, 1, 2, 2])
    alpha = torch.tensor([1 / 3] * 3 + [1.0] + [0.5, 0.5]).unsqueeze(1)
    expected = torch.tensor([math.log(3), 0.0, math.log(2)])
    torch.testing.assert_close(neighbourhood_entropy(alpha, index, 3)[:, 0], expected)
    torch.testing.assert_close(uniform_entropy(index, 3), expected)
    one_hot = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0]).unsqueeze(1)
    assert neighbourhood_entropy(one_hot, index, 3).abs().max() == 0.0


class _Toy:
    """Two classes on two cliques; features are noise, so only the graph tells the class."""

    def __init__(self):
        g = torch.Generator().manual_seed(11)
        n = 40
        self.y = (torch.arange(n) >= 20).long()
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j and (i < 20) == (j < 20)]
        self.edge_index = torch.tensor(pairs).T
        self.x = torch.randn(n, 8, generator=g)
        self.train_mask = torch.zeros(n, dtype=torch.bool)
        self.train_mask[[0, 1, 20, 21]] = True
        self.val_mask = torch.zeros(n, dtype=torch.bool)
        self.val_mask[[2, 3, 22, 23]] = True
        self.test_mask = ~(self.train_mask | self.val_mask)


def test_training_learns_a_graph_task_that_an_mlp_cannot():
    data = _Toy()
    torch.manual_seed(0)
    gat = train_node_classifier(GAT(8, 2, hidden=4, heads=2, dropout=0.0), data, recipe=Recipe(0.02, 0.0, 60, 20))
    torch.manual_seed(0)
    mlp = train_node_classifier(MLP(8, 2, dropout=0.0), data, recipe=Recipe(0.02, 0.0, 60, 20))
    assert gat.test_acc == 1.0
    assert mlp.test_acc < 0.8
    assert 0 <= gat.best_epoch < gat.epochs <= 60 and len(gat.val_loss_history) == gat.epochs


# ------------------------------------------------------------------------------------ errors


def test_documented_errors():
    layer = GATLayer(4, 2, heads=2)
    edges = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(ShapeError, match=r"x: expected shape \(N, 4\), got \(3, 5\)"):
        layer(torch.randn(3, 5), edges)
    with pytest.raises(ShapeError, match=r"edge_index: expected shape \(2, E\)"):
        layer(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(DTypeError, match="edge_index: expected an integer"):
        layer(torch.randn(3, 4), edges.float())
    with pytest.raises(ValueError, match=r"edge_index: expected node ids in 0..2, got 0..5"):
        layer(torch.randn(3, 4), torch.tensor([[0, 5], [1, 0]]))
    with pytest.raises(ShapeError, match=r"adjacency: expected shape \(3, 3\), got \(4, 4\)"):
        layer.forward_dense(torch.randn(3, 4), torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ShapeError, match=r"query: expected shape \(2, N, 2\)"):
        layer.score(torch.randn(3, 5, 2), torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match="dropout: expected a probability"):
        GATLayer(4, 2, dropout=1.0)
    with pytest.raises(ValueError, match="heads, in_features, out_features"):
        GATLayer(4, 2, heads=0)
    with pytest.raises(ShapeError, match=r"x: expected shape \(N, 3\)"):
        GCNLayer(3, 2)(torch.randn(2, 4), edges)
