"""The variants of chapter 9 against the libraries people use for them, their properties, and their errors."""


import pytest
import torch
import torch.nn.functional as F
from mlp_mixer_pytorch import MLPMixer as ReferenceMixer
from performer_pytorch.performer_pytorch import causal_linear_attention_noncuda
from performer_pytorch.performer_pytorch import linear_attention as performer_linear
from transformers import LlamaConfig, SwinConfig
from transformers.models.llama.modeling_llama import (
    LlamaAttention,
    LlamaRotaryEmbedding,
)
from transformers.models.swin.modeling_swin import SwinLayer

from attnbook.core import attention, causal_mask
from attnbook.errors import DTypeError, ShapeError
from attnbook.variants import (
    AttentionPooling,
    GroupedQueryAttention,
    HierarchicalAttention,
    MixingBlock,
    MLPMixer,
    PositionProbe,
    SequenceClassifier,
    SwinBlock,
    elu_feature_map,
    gumbel_normalize,
    kv_cache_numbers,
    linear_attention,
    quadratic_linear_attention,
    reinforce_surrogate,
    sample_normalize,
    shifted_window_mask,
    sliding_window_attention,
    sliding_window_mask,
    tiled_attention,
    window_merge,
    window_partition,
)


def qkv(n_q, n_k, d=9, d_v=5, batch=(2, 3), dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*batch, n, m, generator=g, dtype=dtype) for n, m in ((n_q, d), (n_k, d), (n_k, d_v)))


# ------------------------------------------------------------------------------------------------ tiled


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("n_q,n_k,block", [(37, 53, 16), (53, 53, 128), (5, 200, 7), (1, 1, 1)])
def test_tiled_matches_sdpa(dtype, tol, n_q, n_k, block):
    q, k, v = qkv(n_q, n_k, dtype=dtype, seed=n_k)
    expected = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(tiled_attention(q, k, v, block_size=block), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("mask_shape", [(2, 3, 37, 53), (2, 1, 1, 53), (37, 53), (37, 1)])
def test_tiled_with_boolean_mask_matches_sdpa(dtype, tol, mask_shape):
    q, k, v = qkv(37, 53, dtype=dtype)
    mask = torch.rand(mask_shape, generator=torch.Generator().manual_seed(1)) > 0.4
    mask[..., 0] = True
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(tiled_attention(q, k, v, mask=mask, block_size=10), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("n_q,n_k", [(41, 41), (20, 41)])
def test_tiled_causal_matches_sdpa(dtype, tol, n_q, n_k):
    q, k, v = qkv(n_q, n_k, dtype=dtype)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(tiled_attention(q, k, v, is_causal=True, block_size=6), expected, atol=tol, rtol=tol)


def test_tiled_fully_masked_rows_give_zeros_and_finite_gradients():
    q, k, v = qkv(6, 13, dtype=torch.float64)
    q.requires_grad_(True)
    mask = torch.ones(6, 13, dtype=torch.bool)
    mask[2] = False
    out = tiled_attention(q, k, v, mask=mask, block_size=4)
    assert (out[..., 2, :] == 0).all()
    torch.testing.assert_close(out, attention(q, k, v, mask=mask)[0])
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_tiled_gradients_match_core():
    q, k, v = (t.requires_grad_(True) for t in qkv(11, 17, dtype=torch.float64))
    grads = torch.autograd.grad(tiled_attention(q, k, v, block_size=5).square().sum(), (q, k, v))
    expected = torch.autograd.grad(attention(q, k, v)[0].square().sum(), (q, k, v))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


# ------------------------------------------------------------------------------------------------ linear


@pytest.mark.parametrize("n", [1, 37, 300])
def test_linear_attention_matches_performer(n):
    q, k, v = qkv(n, n, dtype=torch.float64, seed=n)
    expected = performer_linear(elu_feature_map(q), elu_feature_map(k), v)  # performer adds no eps here
    torch.testing.assert_close(linear_attention(q, k, v, eps=0.0), expected, atol=1e-10, rtol=1e-10)
    q32, k32, v32 = (t.float() for t in (q, k, v))
    torch.testing.assert_close(linear_attention(q32, k32, v32), expected.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n,chunk", [(1, 128), (37, 10), (300, 128)])
def test_causal_linear_attention_matches_performer(n, chunk):
    q, k, v = qkv(n, n, dtype=torch.float64, seed=n)
    expected = causal_linear_attention_noncuda(elu_feature_map(q), elu_feature_map(k), v)
    got = linear_attention(q, k, v, causal=True, chunk_size=chunk)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_is_the_core_with_a_kernel_score(causal):
    q, k, v = qkv(23, 23, dtype=torch.float64)
    torch.testing.assert_close(linear_attention(q, k, v, causal=causal, eps=0.0, chunk_size=7),
                               quadratic_linear_attention(q, k, v, causal=causal))


# ------------------------------------------------------------------------------------------------ windows


def test_sliding_window_mask():
    mask = sliding_window_mask(7, 2)
    i, j = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
    assert torch.equal(mask, (i - j).abs() <= 2)
    assert torch.equal(sliding_window_mask(7, 2, causal=True), mask & (j <= i))
    assert torch.equal(sliding_window_mask(5, 10), torch.ones(5, 5, dtype=torch.bool))


@pytest.mark.parametrize("n,window", [(37, 5), (10, 3), (7, 20), (1, 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_attention_equals_the_core_with_the_mask(n, window, causal):
    q, k, v = qkv(n, n, dtype=torch.float64)
    expected, _ = attention(q, k, v, mask=sliding_window_mask(n, window, causal))
    torch.testing.assert_close(sliding_window_attention(q, k, v, window, causal), expected)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(n, window, causal))
    torch.testing.assert_close(expected, sdpa)


def swin_pair(resolution, shift, dim=15, heads=3, window=3):
    config = SwinConfig(window_size=window, mlp_ratio=2.0)
    config._attn_implementation = "eager"
    layer = SwinLayer(config, dim=dim, input_resolution=resolution, num_heads=heads, shift_size=shift).eval()
    torch.nn.init.normal_(layer.attention.relative_position_bias.relative_position_bias_table)  # starts at 0
    return layer, SwinBlock.from_reference(layer).eval()


@pytest.mark.parametrize("resolution,shift", [((6, 9), 0), ((6, 9), 1), ((9, 6), 2), ((3, 3), 0)])
def test_swin_block_matches_transformers_swin_layer(resolution, shift):
    layer, block = swin_pair(resolution, shift)
    x = torch.randn(2, resolution[0] * resolution[1], 15, generator=torch.Generator().manual_seed(shift))
    torch.testing.assert_close(block(x), layer(x, resolution)[0], atol=1e-5, rtol=1e-5)


def test_swin_bias_and_shift_matter():
    layer, block = swin_pair((6, 9), 1)
    x = torch.randn(1, 54, 15)
    plain = SwinBlock(15, (6, 9), 3, 3, shift_size=0, mlp_ratio=2.0)
    plain.load_state_dict(block.state_dict())
    assert (plain(x) - block(x)).abs().max() > 1e-3  # shifting changes the output
    with torch.no_grad():
        block.attn.score.table.zero_()
    assert (block(x) - layer(x, (6, 9))[0]).abs().max() > 1e-3  # so does the bias table


def test_window_partition_round_trip_and_shift_mask():
    x = torch.randn(2, 6, 9, 4)
    windows = window_partition(x, 3)
    assert windows.shape == (12, 9, 4)
    torch.testing.assert_close(window_merge(windows, 3, 6, 9), x)
    torch.testing.assert_close(windows[1].view(3, 3, 4), x[0, :3, 3:6])
    mask = shifted_window_mask(6, 9, 3, 1)
    assert mask.shape == (6, 9, 9) and mask[0].all()  # the first window holds one region only
    assert not mask[-1].all() and mask[-1].diagonal().all()


# ------------------------------------------------------------------------------------------------ grouped


def llama_pair(num_kv_heads, hidden=36, heads=6):
    config = LlamaConfig(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=num_kv_heads,
                         attention_bias=True)
    config._attn_implementation = "eager"
    reference = LlamaAttention(config, layer_idx=0).eval()
    return config, reference, GroupedQueryAttention.from_reference(reference)


@pytest.mark.parametrize("num_kv_heads", [1, 2, 3, 6])
@pytest.mark.parametrize("causal", [False, True])
def test_grouped_query_attention_matches_llama(num_kv_heads, causal):
    config, reference, gqa = llama_pair(num_kv_heads)
    x = torch.randn(2, 7, 36, generator=torch.Generator().manual_seed(num_kv_heads))
    cos_sin = LlamaRotaryEmbedding(config)(x, torch.arange(7)[None].expand(2, 7))
    mask = causal_mask(7) if causal else None
    additive = None if mask is None else torch.zeros(7, 7).masked_fill(~mask, torch.finfo(torch.float32).min)
    expected, expected_weights = reference(x, position_embeddings=cos_sin, attention_mask=additive)
    out, weights = gqa(x, mask=mask, position_embeddings=cos_sin)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_kv_heads", [1, 2, 6])
def test_grouped_query_attention_matches_sdpa_enable_gqa(num_kv_heads):
    _, _, gqa = llama_pair(num_kv_heads)
    x = torch.randn(3, 11, 36)
    q = gqa.heads(gqa.q_proj(x), 6)
    k, v = gqa.heads(gqa.k_proj(x), num_kv_heads), gqa.heads(gqa.v_proj(x), num_kv_heads)
    sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    expected = gqa.o_proj(sdpa.transpose(1, 2).flatten(2))
    torch.testing.assert_close(gqa(x, mask=causal_mask(11))[0], expected, atol=1e-5, rtol=1e-5)


def test_kv_cache_shrinks_by_the_group_size():
    sizes = [GroupedQueryAttention(64, 8, kv).kv_cache_numbers(100) for kv in (8, 2, 1)]
    assert sizes == [2 * 8 * 8 * 100, 2 * 2 * 8 * 100, 2 * 1 * 8 * 100]
    assert kv_cache_numbers(8, 128, 4096, num_layers=32) == 2 * 8 * 128 * 4096 * 32


# ------------------------------------------------------------------------------------------------ hard


def test_gumbel_normalize_is_one_hot_with_soft_gradients():
    scores = torch.randn(4, 5, 7, requires_grad=True)
    mask = torch.rand(4, 5, 7) > 0.3
    mask[..., 0] = True
    weights = gumbel_normalize(tau=0.5)(scores, mask)
    assert torch.equal(weights.detach().sum(-1), torch.ones(4, 5))
    assert torch.equal(weights.detach().max(-1).values, torch.ones(4, 5))
    assert not (weights.detach() * ~mask).any()  # never a masked key
    (weights * torch.randn(7)).sum().backward()
    assert scores.grad.abs().sum() > 0


def test_hard_sample_frequencies_follow_the_softmax():
    scores = torch.tensor([[1.0, 0.0, -1.0, 2.0]]).expand(20000, 4)
    generator = torch.Generator().manual_seed(0)
    counts = sample_normalize(generator)(scores, None).sum(0) / 20000
    gumbel = gumbel_normalize()(scores, None).sum(0) / 20000
    p = torch.softmax(scores[0], -1)
    se = (p * (1 - p) / 20000).sqrt()
    assert ((counts - p).abs() < 5 * se).all() and ((gumbel - p).abs() < 5 * se).all()


def test_hard_attention_through_the_core_reads_one_value():
    q, k, v = qkv(4, 6, dtype=torch.float64)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1] = False
    out, weights = attention(q, k, v, mask=mask, normalize=sample_normalize())
    assert (weights.sum(-1)[..., [0, 2, 3]] == 1).all() and (weights[..., 1, :] == 0).all()
    chosen = weights.argmax(-1, keepdim=True)
    torch.testing.assert_close(out[..., [0, 2, 3], :], v.gather(-2, chosen.expand(-1, -1, -1, 5))[..., [0, 2, 3], :])


def test_reinforce_surrogate_is_unbiased_for_the_exact_gradient():
    torch.manual_seed(0)
    scores = torch.tensor([0.5, -0.3, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    losses = torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64)
    exact = torch.autograd.grad((torch.softmax(scores, -1) * losses).sum(), scores)[0]
    many = scores.expand(200000, 4)
    choice = sample_normalize()(many, None)
    baseline = (torch.softmax(scores, -1) * losses).sum()
    estimate = torch.autograd.grad(reinforce_surrogate(many, choice, choice @ losses, baseline), scores)[0]
    torch.testing.assert_close(estimate, exact, atol=0.01, rtol=0)


# ------------------------------------------------------------------------------------------------ mixers


@pytest.mark.parametrize("image,patch,depth", [(15, 5, 2), (12, 4, 1)])
def test_mlp_mixer_matches_mlp_mixer_pytorch(image, patch, depth):
    torch.manual_seed(image)
    reference = ReferenceMixer(image_size=image, channels=3, patch_size=patch, dim=13, depth=depth,
                               num_classes=7).eval()
    mixer = MLPMixer.from_reference(reference, image, 3, patch).eval()
    x = torch.randn(4, 3, image, image)
    torch.testing.assert_close(mixer(x), reference(x), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        mixer.blocks[0].mix[0].bias.add_(1.0)
    assert (mixer(x) - reference(x)).abs().max() > 1e-4  # the token-mixing weights are used


def test_token_mixing_by_mlp_is_not_permutation_equivariant_but_attention_is():
    torch.manual_seed(0)
    x, perm = torch.randn(2, 9, 8), torch.randperm(9)
    attention_block = MixingBlock(9, 8, 16, 16, token_mixing="attention", num_heads=2)
    mlp_block = MixingBlock(9, 8, 16, 16, token_mixing="mlp")
    torch.testing.assert_close(attention_block(x[:, perm]), attention_block(x)[:, perm])
    assert (mlp_block(x[:, perm]) - mlp_block(x)[:, perm]).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------------ pooling


def test_attention_pooling_is_a_masked_weighted_average():
    torch.manual_seed(0)
    pool = AttentionPooling(6)
    states = torch.randn(3, 5, 6)
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    pooled, weights = pool(states, valid)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert not weights[~valid].any()
    torch.testing.assert_close(pooled, (weights[..., None] * states).sum(1))
    torch.testing.assert_close(pooled[2], states[2, 0])


@pytest.mark.parametrize("encoder", ["gru", "cnn", "linear"])
@pytest.mark.parametrize("pooling", ["attention", "mean", "last"])
def test_sequence_classifier_ignores_padding(pooling, encoder):
    torch.manual_seed(0)
    model = SequenceClassifier(11, 6, 5, 3, pooling, encoder).eval()
    tokens = torch.randint(1, 11, (2, 4))
    padded = torch.cat([tokens, torch.zeros(2, 3, dtype=torch.long)], 1)
    if pooling != "last":  # the backward GRU reads padding first; last-state pooling takes the last real token
        torch.testing.assert_close(model(padded)[1][:, 4:], torch.zeros(2, 3))
    _, weights = model(padded)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))


def test_hierarchical_attention_shapes_and_weights():
    torch.manual_seed(0)
    model = HierarchicalAttention(12, 6, 5, 2)
    tokens = torch.randint(1, 12, (3, 4, 5))
    tokens[0, 3] = 0  # an empty sentence
    logits, (words, sentences) = model(tokens)
    assert logits.shape == (3, 2) and words.shape == (3, 4, 5) and sentences.shape == (3, 4)
    torch.testing.assert_close(sentences.sum(-1), torch.ones(3))
    assert sentences[0, 3] == 0


# ------------------------------------------------------------------------------------------------ positions


@pytest.mark.parametrize("kind", ["sinusoidal", "learned", "rope", "alibi"])
def test_position_probe_reads_only_earlier_tokens(kind):
    torch.manual_seed(0)
    model = PositionProbe(10, 12, 3, kind, max_len=20).eval()
    tokens = torch.randint(0, 10, (2, 9))
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 10
    torch.testing.assert_close(model(tokens)[:, :5], model(changed)[:, :5])
    assert (model(tokens)[:, 5:] - model(changed)[:, 5:]).abs().max() > 1e-4


def test_position_probe_errors():
    with pytest.raises(ValueError, match="positions"):
        PositionProbe(10, 12, 3, "relative")
    with pytest.raises(ValueError, match="d_model"):
        PositionProbe(10, 12, 4, "rope")
    with pytest.raises(ShapeError, match="tokens: expected length <= max_len=20"):
        PositionProbe(10, 12, 3, "rope", max_len=20)(torch.zeros(1, 21, dtype=torch.long))


def test_mixer_attention_uses_positions_only_when_asked():
    assert MLPMixer(8, 1, 2, 8, 1, 3, 8, 8, token_mixing="attention").position.shape == (1, 16, 8)
    assert MLPMixer(8, 1, 2, 8, 1, 3, 8, 8, token_mixing="attention", positions=False).position is None
    assert MLPMixer(8, 1, 2, 8, 1, 3, 8, 8, token_mixing="mlp").position is None


# ------------------------------------------------------------------------------------------------ errors


def test_variant_errors_name_the_argument():
    q, k, v = qkv(4, 6)
    with pytest.raises(ShapeError, match="key: expected feature size"):
        tiled_attention(q, k[..., :3], v)
    with pytest.raises(ShapeError, match="value: expected length"):
        tiled_attention(q, k, v[..., :5, :])
    with pytest.raises(ValueError, match="block_size"):
        tiled_attention(q, k, v, block_size=0)
    with pytest.raises(DTypeError, match="mask: expected dtype torch.bool"):
        tiled_attention(q, k, v, mask=torch.ones(4, 6))
    with pytest.raises(ShapeError, match="mask: expected a shape broadcastable"):
        tiled_attention(q, k, v, mask=torch.ones(5, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match="query: expected a torch.Tensor"):
        tiled_attention(q.tolist(), k, v)
    with pytest.raises(ShapeError, match="key: causal linear attention needs n_k = n_q"):
        linear_attention(q, k, v, causal=True)
    with pytest.raises(ShapeError, match="key/value"):
        linear_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="window"):
        sliding_window_mask(5, -1)
    with pytest.raises(ShapeError, match="key, value: expected length n=4"):
        sliding_window_attention(q, k, v, 2)
    with pytest.raises(ValueError, match="window: expected a window of at least 1"):
        sliding_window_attention(q, q, q, 0)
    with pytest.raises(ValueError, match="window_size: expected a divisor"):
        SwinBlock(8, (6, 9), 2, 4)
    with pytest.raises(ValueError, match="shift_size"):
        SwinBlock(8, (6, 9), 2, 3, shift_size=3)
    with pytest.raises(ShapeError, match="x: expected shape \\(batch, 54, 8\\)"):
        SwinBlock(8, (6, 9), 2, 3)(torch.randn(2, 50, 8))
    with pytest.raises(TypeError, match="layer: expected transformers' SwinLayer"):
        SwinBlock.from_reference(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="num_kv_heads: expected a divisor"):
        GroupedQueryAttention(36, 6, 4)
    with pytest.raises(ValueError, match="embed_dim: expected a multiple"):
        GroupedQueryAttention(35, 6, 2)
    with pytest.raises(ShapeError, match="x: expected feature size embed_dim=36"):
        GroupedQueryAttention(36, 6, 2)(torch.randn(2, 5, 30))
    with pytest.raises(ShapeError, match="position_embeddings"):
        GroupedQueryAttention(36, 6, 2)(torch.randn(2, 5, 36), position_embeddings=(torch.ones(2, 5, 4),) * 2)
    with pytest.raises(ShapeError, match="mask: expected a shape broadcastable"):
        GroupedQueryAttention(36, 6, 2)(torch.randn(2, 5, 36), mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="module: expected transformers' LlamaAttention"):
        GroupedQueryAttention.from_reference(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="tau"):
        gumbel_normalize(tau=0.0)
    with pytest.raises(ValueError, match="choice: expected a one-hot"):
        reinforce_surrogate(torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3))
    with pytest.raises(ValueError, match="token_mixing"):
        MixingBlock(4, 8, 8, 8, token_mixing="conv")
    with pytest.raises(ShapeError, match="images: expected shape \\(batch, 3, 12, 12\\)"):
        MLPMixer(12, 3, 4, 8, 1, 2, 8, 8)(torch.randn(1, 3, 10, 10))
    with pytest.raises(ValueError, match="patch_size"):
        MLPMixer(12, 3, 5, 8, 1, 2, 8, 8)
    with pytest.raises(TypeError, match="model: expected mlp-mixer-pytorch"):
        MLPMixer.from_reference(torch.nn.Linear(2, 2), 12, 3, 4)
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(10, 4, 4, 2, pooling="max")
    with pytest.raises(ValueError, match="encoder: expected one of"):
        SequenceClassifier(10, 4, 4, 2, encoder="rnn")
    with pytest.raises(ShapeError, match="tokens: expected 3 dimensions"):
        HierarchicalAttention(10, 4, 4, 2)(torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ShapeError, match="tokens: expected integer token ids"):
        SequenceClassifier(10, 4, 4, 2)(torch.ones(2, 5))
