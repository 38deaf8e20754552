"""The attention core against PyTorch's reference implementations, its properties, and its errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnbook.core import (
    AdditiveScore,
    GeneralScore,
    MultiHeadAttention,
    attention,
    causal_mask,
    cosine_score,
    dot_score,
    edge_attention,
    key_mask,
    masked_softmax,
    padding_mask,
    scaled_dot_score,
    segment_softmax,
)
from attnbook.errors import DTypeError, ShapeError

TOL = dict(atol=1e-5, rtol=1e-5)


def random_mask(shape, generator, p=0.4):
    """A random boolean mask with at least one allowed key per row (SDPA gives NaN on empty rows)."""
    mask = torch.rand(shape, generator=generator) > p
    mask[..., 0] = True
    return mask


# ------------------------------------------------------------------------------------ against the reference


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
@pytest.mark.parametrize("n_q,n_k,d,d_v", [(1, 1, 1, 1), (5, 7, 8, 3), (6, 6, 16, 16)])
def test_attention_matches_sdpa(batch, n_q, n_k, d, d_v):
    g = torch.Generator().manual_seed(n_q * 100 + n_k)
    q, k, v = (torch.randn(*batch, n, m, generator=g) for n, m in ((n_q, d), (n_k, d), (n_k, d_v)))
    out, weights = attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL)
    assert weights.shape == (*batch, n_q, n_k)


@pytest.mark.parametrize("mask_shape", ["full", "broadcast_rows", "broadcast_batch"])
def test_attention_with_boolean_mask_matches_sdpa(mask_shape):
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 3, 9, 8, generator=g), torch.randn(2, 3, 9, 4, generator=g)
    shape = {"full": (2, 3, 5, 9), "broadcast_rows": (2, 1, 1, 9), "broadcast_batch": (5, 9)}[mask_shape]
    mask = random_mask(shape, g)
    out, weights = attention(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL)
    assert not weights.masked_select(~mask.expand_as(weights)).any()


def test_causal_mask_matches_sdpa_is_causal():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=g) for _ in range(3))
    out, weights = attention(q, k, v, mask=causal_mask(6))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), **TOL)
    assert torch.all(weights.triu(diagonal=1) == 0)


def test_causal_mask_aligns_the_last_query_with_the_last_key():
    # With a cache of earlier keys, query i of n_q sees keys up to n_k - n_q + i.
    mask = causal_mask(2, 5)
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


@pytest.mark.parametrize("name,scale", [("dot", 1.0), ("scaled_dot", None)])
def test_named_scores_match_sdpa_scale(name, scale):
    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(4, 5, 12, generator=g), torch.randn(4, 7, 12, generator=g), torch.randn(4, 7, 2, generator=g)
    out, _ = attention(q, k, v, score=name)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=scale), **TOL)


def test_cosine_score_is_the_cosine_of_the_angle():
    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(3, 5, generator=g), torch.randn(4, 5, generator=g)
    expected = F.cosine_similarity(q[:, None, :], k[None, :, :], dim=-1)
    torch.testing.assert_close(cosine_score(q, k), expected, **TOL)


def test_general_and_additive_scores_follow_their_equations():
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 6, generator=g)
    general = GeneralScore(4, 6)
    torch.testing.assert_close(general(q, k), torch.einsum("bqi,ij,bkj->bqk", q, general.weight, k), **TOL)
    additive = AdditiveScore(4, 6, hidden_dim=7)
    expected = torch.empty(2, 3, 5)
    for b in range(2):
        for i in range(3):
            for j in range(5):
                hidden = torch.tanh(additive.w_query(q[b, i]) + additive.w_key(k[b, j]))
                expected[b, i, j] = additive.v(hidden).squeeze()
    torch.testing.assert_close(additive(q, k), expected, **TOL)
    v = torch.randn(2, 5, 3, generator=g)
    out, weights = attention(q, k, v, score=additive)
    torch.testing.assert_close(out, torch.softmax(expected, -1) @ v, **TOL)


def mha_pair(embed_dim, num_heads, bias=True, kdim=None, vdim=None, seed=0):
    torch.manual_seed(seed)
    reference = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=True, kdim=kdim, vdim=vdim)
    if bias:  # PyTorch initialises biases to zero; make them count
        with torch.no_grad():
            reference.in_proj_bias.normal_()
            reference.out_proj.bias.normal_()
    return reference.eval(), MultiHeadAttention.from_reference(reference).eval()


@pytest.mark.parametrize("embed_dim,num_heads,n_q,n_k", [(16, 4, 5, 7), (12, 3, 1, 9), (8, 1, 6, 6), (30, 5, 3, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_multihead_matches_torch(embed_dim, num_heads, n_q, n_k, bias):
    reference, ours = mha_pair(embed_dim, num_heads, bias=bias)
    g = torch.Generator().manual_seed(6)
    query, key = torch.randn(3, n_q, embed_dim, generator=g), torch.randn(3, n_k, embed_dim, generator=g)
    value = torch.randn(3, n_k, embed_dim, generator=g)
    ref_out, ref_w = reference(query, key, value, average_attn_weights=False)
    out, weights = ours(query, key, value)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(weights, ref_w, **TOL)


def test_multihead_matches_torch_with_masks_and_other_key_sizes():
    reference, ours = mha_pair(16, 4, kdim=6, vdim=10, seed=1)
    g = torch.Generator().manual_seed(7)
    query, key, value = torch.randn(2, 5, 16, generator=g), torch.randn(2, 7, 6, generator=g), torch.randn(2, 7, 10, generator=g)
    valid = padding_mask(torch.tensor([7, 4]), 7)  # (batch, n_k)
    ref_out, ref_w = reference(query, key, value, key_padding_mask=~valid, average_attn_weights=False)
    out, weights = ours(query, key, value, mask=key_mask(valid))
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(weights, ref_w, **TOL)
    # a per-batch, per-head mask: nn.MultiheadAttention takes it as (batch * heads, n_q, n_k), True = blocked
    mask = random_mask((2, 4, 5, 7), g)
    ref_out, _ = reference(query, key, value, attn_mask=~mask.reshape(8, 5, 7))
    torch.testing.assert_close(ours(query, key, value, mask=mask)[0], ref_out, **TOL)


def test_multihead_causal_self_attention_matches_torch():
    reference, ours = mha_pair(24, 6, seed=2)
    x = torch.randn(2, 8, 24, generator=torch.Generator().manual_seed(8))
    ref_out, _ = reference(x, x, x, attn_mask=~causal_mask(8))
    torch.testing.assert_close(ours(x, x, x, mask=causal_mask(8))[0], ref_out, **TOL)


def test_multihead_float64_and_dropout():
    reference, ours = mha_pair(8, 2, seed=3)
    ours = ours.double()
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    out, weights = ours(x, x, x)
    assert out.dtype == weights.dtype == torch.float64
    dropping = MultiHeadAttention(8, 2, dropout=0.5).train()
    x = torch.randn(2, 4, 8)
    torch.manual_seed(0)
    first, w1 = dropping(x, x, x)
    torch.manual_seed(1)
    second, w2 = dropping(x, x, x)
    assert not torch.allclose(first, second), "dropout in training mode must change the output"
    torch.testing.assert_close(w1, w2)  # the returned weights are the distribution before dropout
    dropping.eval()
    torch.testing.assert_close(dropping(x, x, x)[0], dropping(x, x, x)[0])


# ------------------------------------------------------------------------------------------- properties

sizes = st.integers(min_value=1, max_value=6)


@settings(max_examples=40, deadline=None)
@given(b=sizes, n_q=sizes, n_k=sizes, d=sizes, seed=st.integers(0, 10_000), p=st.floats(0.0, 1.0))
def test_rows_sum_to_one_and_masked_keys_get_nothing(b, n_q, n_k, d, seed, p):
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(b, n_q, d, generator=g), torch.randn(b, n_k, d, generator=g), torch.randn(b, n_k, 2, generator=g)
    mask = torch.rand(b, n_q, n_k, generator=g) >= p  # rows may be fully masked
    out, weights = attention(q, k, v, mask=mask)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert torch.all(weights[~mask] == 0)
    row_sums = weights.sum(-1)
    has_keys = mask.any(-1)
    torch.testing.assert_close(row_sums[has_keys], torch.ones_like(row_sums[has_keys]))
    assert torch.all(row_sums[~has_keys] == 0) and torch.all(out[~has_keys] == 0)


@settings(max_examples=30, deadline=None)
@given(n_q=sizes, n_k=st.integers(2, 8), seed=st.integers(0, 10_000))
def test_permutation_equivariance(n_q, n_k, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(n_q, 4, generator=g), torch.randn(n_k, 4, generator=g), torch.randn(n_k, 3, generator=g)
    out, weights = attention(q, k, v)
    keys = torch.randperm(n_k, generator=g)
    out_k, weights_k = attention(q, k[keys], v[keys])  # reordering the memory changes nothing
    torch.testing.assert_close(out_k, out, **TOL)
    torch.testing.assert_close(weights_k, weights[:, keys], **TOL)
    queries = torch.randperm(n_q, generator=g)
    torch.testing.assert_close(attention(q[queries], k, v)[0], out[queries], **TOL)  # queries move their rows


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6))
def test_self_attention_is_permutation_equivariant_in_multihead(seed, n):
    torch.manual_seed(seed)
    layer = MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, n, 8)
    perm = torch.randperm(n)
    torch.testing.assert_close(layer(x[:, perm], x[:, perm], x[:, perm])[0], layer(x, x, x)[0][:, perm], **TOL)


def test_fully_masked_rows_have_finite_zero_gradients():
    scores = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, True], [False] * 4, [True] * 4])
    weights = masked_softmax(scores, mask)
    (weights * torch.arange(4.0)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert torch.all(scores.grad[1] == 0) and torch.all(weights[1] == 0)
    # where rows have keys the gradient is the ordinary softmax gradient
    plain = scores.detach().clone().requires_grad_(True)
    (torch.softmax(plain[2], -1) * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(scores.grad[2], plain.grad[2])


def test_masked_softmax_survives_extreme_scores_and_half_precision():
    scores = torch.tensor([[1e30, -1e30, 0.0]])
    weights = masked_softmax(scores, torch.tensor([[False, True, True]]))
    torch.testing.assert_close(weights, torch.tensor([[0.0, 0.0, 1.0]]))
    half = masked_softmax(torch.randn(2, 5, dtype=torch.bfloat16), torch.zeros(2, 5, dtype=torch.bool))
    assert torch.all(half == 0)


def test_padding_mask():
    assert padding_mask(torch.tensor([2, 0, 3]), 4).tolist() == [
        [True, True, False, False], [False] * 4, [True, True, True, False]]
    assert padding_mask(torch.tensor([1, 2])).shape == (2, 2)


# ------------------------------------------------------------------------------------------------ errors


def qkv(n_q=3, n_k=4, d=5, d_v=2, batch=(2,)):
    return torch.randn(*batch, n_q, d), torch.randn(*batch, n_k, d), torch.randn(*batch, n_k, d_v)


def test_error_feature_sizes_differ():
    q, k, v = qkv()
    with pytest.raises(ShapeError, match=r"key: expected feature size d=5.*\(2, 4, 3\)"):
        attention(q, k[..., :3], v)


def test_error_key_and_value_lengths_differ():
    q, k, v = qkv()
    with pytest.raises(ShapeError, match=r"value: expected length n_k=4.*\(2, 3, 2\)"):
        attention(q, k, v[:, :3])


def test_error_batch_shapes_do_not_broadcast():
    q, k, v = qkv()
    with pytest.raises(ShapeError, match=r"batch shapes do not broadcast: query \(2,\), key \(3,\)"):
        attention(q, torch.randn(3, 4, 5), torch.randn(3, 4, 2))


def test_error_mask_not_boolean():
    q, k, v = qkv()
    with pytest.raises(DTypeError, match=r"mask: expected dtype torch.bool.*torch.float32"):
        attention(q, k, v, mask=torch.ones(3, 4))
    with pytest.raises(TypeError):  # a DTypeError is a TypeError and a ValueError
        attention(q, k, v, mask=torch.ones(3, 4, dtype=torch.long))


def test_error_mask_does_not_broadcast():
    q, k, v = qkv()
    with pytest.raises(ShapeError, match=r"mask: expected a shape broadcastable to .*\(2, 3, 4\), got \(3, 5\)"):
        attention(q, k, v, mask=torch.ones(3, 5, dtype=torch.bool))


def test_error_inputs_without_length_axis_and_bad_scores():
    q, k, v = qkv()
    with pytest.raises(ShapeError, match=r"query: expected at least 2 dimensions"):
        attention(torch.randn(5), k, v)
    with pytest.raises(ValueError, match=r"score: expected one of"):
        attention(q, k, v, score="manhattan")
    with pytest.raises(ValueError, match=r"dropout"):
        attention(q, k, v, dropout=1.5)
    with pytest.raises(ShapeError, match=r"query: expected feature size 4 \(GeneralScore.query_dim\)"):
        attention(q, k, v, score=GeneralScore(4, 5))


def test_error_embed_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"embed_dim: expected a multiple of num_heads=3, got embed_dim=10"):
        MultiHeadAttention(10, 3)


def test_error_multihead_shapes():
    layer = MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    with pytest.raises(ShapeError, match=r"query: expected 3 dimensions \(batch, length, features\), got shape \(3, 8\)"):
        layer(x[0], x, x)
    with pytest.raises(ShapeError, match=r"key: expected feature size 8 \(kdim\), got shape \(2, 3, 6\)"):
        layer(x, x[..., :6], x)
    with pytest.raises(ShapeError, match=r"batch sizes differ"):
        layer(x, x[:1], x[:1])
    with pytest.raises(ShapeError, match=r"value: expected length n_k=3"):
        layer(x, x, x[:, :2])
    with pytest.raises(ShapeError, match=r"mask: expected a shape broadcastable to \(batch, heads, n_q, n_k\) \(2, 2, 3, 3\)"):
        layer(x, x, x, mask=torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"expected torch.nn.MultiheadAttention"):
        MultiHeadAttention.from_reference(nn.Linear(2, 2))


def test_scaled_dot_has_unit_variance_for_unit_inputs():
    g = torch.Generator().manual_seed(9)
    for d in (16, 256):
        q, k = torch.randn(2000, 1, d, generator=g), torch.randn(2000, 1, d, generator=g)
        scaled, plain = scaled_dot_score(q, k), dot_score(q, k)  # the package's scores, (2000, 1, 1) each
        torch.testing.assert_close(plain, (q * k).sum(-1, keepdim=True), atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(scaled, plain / math.sqrt(d))
        assert abs(scaled.var().item() - 1.0) < 0.1  # Var(q·k) = d for unit-variance inputs; /√d gives 1
        assert abs(plain.var().item() / d - 1.0) < 0.1  # the unscaled score's variance grows with d
    v = torch.randn(2000, 1, 3, generator=g)
    _, weights = attention(q, torch.cat([k, -k], 1), torch.cat([v, v], 1))  # the default score is scaled_dot
    torch.testing.assert_close(weights[..., 0], torch.sigmoid(2 * scaled[..., 0, 0])[:, None])


# ---------------------------------------------------------------------------------------------------------
# Normalisation choices and the edge-list form.


def test_normalize_none_and_mean_follow_their_definitions():
    g = torch.Generator().manual_seed(4)
    q, k, v = torch.randn(2, 3, 5, generator=g), torch.randn(2, 4, 5, generator=g), torch.randn(2, 4, 6, generator=g)
    mask = torch.rand(2, 3, 4, generator=g) > 0.4
    mask[0, 1] = False  # one fully masked row
    scores = dot_score(q, k)
    out, w = attention(q, k, v, mask=mask, score="dot", normalize="none")
    torch.testing.assert_close(w, scores * mask)
    torch.testing.assert_close(out, (scores * mask) @ v)
    _, w_mean = attention(q, k, v, mask=mask, score="dot", normalize="mean")
    count = mask.sum(-1, keepdim=True).clamp_min(1)
    torch.testing.assert_close(w_mean, scores * mask / count)
    assert (w_mean[0, 1] == 0).all() and torch.isfinite(w_mean).all()
    _, w_unmasked = attention(q, k, v, score="dot", normalize="mean")
    torch.testing.assert_close(w_unmasked, scores / 4)
    custom = lambda s, m: torch.sigmoid(s)  # noqa: E731  (any callable (scores, mask) -> weights)
    _, w_custom = attention(q, k, v, score="dot", normalize=custom)
    torch.testing.assert_close(w_custom, torch.sigmoid(scores))


def test_error_unknown_normalize():
    q = torch.randn(1, 2, 3)
    with pytest.raises(ValueError, match="normalize: expected one of"):
        attention(q, q, q, normalize="sparsemax")
    with pytest.raises(TypeError, match="normalize: expected a name or a callable"):
        attention(q, q, q, normalize=3)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 7), heads=st.integers(1, 3), d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_edge_attention_equals_dense_masked_attention(n, heads, d, seed):
    g = torch.Generator().manual_seed(seed)
    adjacency = torch.rand(n, n, generator=g) > 0.5  # adjacency[i, j]: i attends j; some rows empty
    dst, src = adjacency.nonzero(as_tuple=True)
    scores_dense = torch.randn(heads, n, n, generator=g, dtype=torch.float64)
    values = torch.randn(heads, n, d, generator=g, dtype=torch.float64)
    dense_out, dense_w = attention(values, values, values, mask=adjacency, score=lambda q, k: scores_dense)
    out, w = edge_attention(scores_dense[:, dst, src].T, values[:, src].transpose(0, 1), dst, n)
    torch.testing.assert_close(w, dense_w[:, dst, src].T)  # (E, H)
    torch.testing.assert_close(out, dense_out.transpose(0, 1))  # (N, H, d); nodes with no edge get zeros


def test_segment_softmax_is_stable_and_errors_are_named():
    scores = torch.tensor([1000.0, 1001.0, -5.0])
    w = segment_softmax(scores, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(w, torch.tensor([1 / (1 + math.e), math.e / (1 + math.e), 1.0]))
    with pytest.raises(ShapeError, match=r"index: expected shape \(3,\)"):
        segment_softmax(scores, torch.tensor([0, 1]), 2)
    with pytest.raises(DTypeError, match="index: expected dtype torch.int64"):
        segment_softmax(scores, torch.tensor([0.0, 1.0, 1.0]), 2)
    with pytest.raises(ValueError, match=r"index: expected targets in \[0, 2\)"):
        segment_softmax(scores, torch.tensor([0, 1, 2]), 2)
    with pytest.raises(ShapeError, match="values: expected shape"):
        edge_attention(scores, torch.zeros(2, 4), torch.tensor([0, 0, 1]), 2)
