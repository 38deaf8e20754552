"""Rotary and ALiBi positions (chapter 9) against rotary-embedding-torch and x-transformers, and their properties."""

import pytest
import torch
from rotary_embedding_torch import RotaryEmbedding
from x_transformers.x_transformers import AlibiPositionalBias

from attnbook.errors import ShapeError
from attnbook.positional import (
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    positional_encoding,
    rotate_half_split,
)


@pytest.mark.parametrize("shape", [(11, 14), (3, 13, 6), (2, 5, 9, 4)])
def test_apply_rotary_matches_rotary_embedding_torch(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    expected = RotaryEmbedding(shape[-1]).rotate_queries_or_keys(x)
    torch.testing.assert_close(apply_rotary(x), expected, atol=1e-5, rtol=1e-5)


def test_apply_rotary_scores_depend_on_offset_only():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 8, dtype=torch.float64, generator=g), torch.randn(1, 8, dtype=torch.float64, generator=g)
    scores = {}
    for pos_q, pos_k in [(0, 3), (5, 8), (40, 43), (7, 2), (102, 97)]:
        rq = apply_rotary(q, torch.tensor([pos_q]))
        rk = apply_rotary(k, torch.tensor([pos_k]))
        scores.setdefault(pos_k - pos_q, []).append((rq @ rk.T).item())
    for offset, values in scores.items():
        assert max(values) - min(values) < 1e-10, (offset, values)
    assert abs(scores[3][0] - scores[-5][0]) > 1e-3  # and it does depend on the offset


def test_apply_rotary_keeps_norms_and_position_zero():
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    out = apply_rotary(x)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(out[:, 0], x[:, 0])


def test_rotate_half_split_is_apply_rotary_after_permuting_features():
    x = torch.randn(2, 7, 10, dtype=torch.float64)
    d = x.shape[-1]
    angles = torch.arange(7, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, d, 2) / d)
    cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)
    half_to_pairs = torch.stack((torch.arange(d // 2), torch.arange(d // 2) + d // 2), -1).flatten()
    torch.testing.assert_close(rotate_half_split(x, cos, sin)[..., half_to_pairs], apply_rotary(x[..., half_to_pairs]))


@pytest.mark.parametrize("heads", [1, 3, 4, 6, 8, 12])
@pytest.mark.parametrize("n_q,n_k", [(7, 7), (5, 9), (1, 4)])
def test_alibi_bias_matches_x_transformers(heads, n_q, n_k):
    expected = AlibiPositionalBias(heads)(n_q, n_k)  # (heads, n_q, n_k)
    bias = alibi_bias(heads, n_q, n_k)
    assert bias.shape == expected.shape == (heads, n_q, n_k)
    torch.testing.assert_close(bias, expected)


def test_alibi_properties():
    bias = alibi_bias(8, 6, 6)
    torch.testing.assert_close(bias.diagonal(dim1=1, dim2=2), torch.zeros(8, 6))
    assert (bias <= 0).all()
    torch.testing.assert_close(alibi_slopes(8), 2.0 ** -torch.arange(1.0, 9.0))  # 1/2, 1/4, ..., 1/256


def test_positional_errors():
    with pytest.raises(ValueError, match="d_model"):
        apply_rotary(torch.randn(4, 5))
    with pytest.raises(ShapeError, match="x: expected at least 2 dimensions"):
        apply_rotary(torch.randn(6))
    with pytest.raises(ShapeError, match="positions: expected shape \\(4,\\)"):
        apply_rotary(torch.randn(4, 6), positions=torch.arange(5))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        apply_rotary([[1.0, 2.0]])
    with pytest.raises(ValueError, match="num_heads"):
        alibi_bias(0, 3, 3)
    with pytest.raises(ValueError, match="n_q, n_k"):
        alibi_bias(2, 0, 3)


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_an_offset_continues_the_positions(kind):
    pos = positional_encoding(kind, 8, max_len=10)
    x = torch.randn(2, 10, 8)
    assert torch.equal(pos(x[:, 6:], offset=6), pos(x)[:, 6:])
    with pytest.raises(ShapeError, match="offset 6"):
        pos(x[:, 4:], offset=6)  # positions 6..11 run past max_len
