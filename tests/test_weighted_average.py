"""Chapter 2's experiment helpers: the √d measurement and the retrieval task for trained scores."""

import math

import pytest
import torch

from attnbook.core import AdditiveScore, GeneralScore
from attnbook.errors import ShapeError
from attnbook.weighted_average import (key_participation, retrieval_accuracy, retrieval_task, scaling_row,
                                       train_retrieval)


def test_key_participation_counts_keys_sharing_the_gradient():
    even = torch.ones(3, 4, 2)
    one = torch.zeros(3, 4, 2)
    one[:, 1] = 5.0
    torch.testing.assert_close(key_participation(even), torch.full((3,), 4.0))
    torch.testing.assert_close(key_participation(one), torch.ones(3))
    torch.testing.assert_close(key_participation(torch.zeros(2, 4, 2)), torch.zeros(2))


def test_scaling_row_matches_the_chain_rule_and_unit_variance():
    row = scaling_row(64, n_queries=2000, n_keys=8, generator=torch.Generator().manual_seed(0))
    assert abs(row["var"] / 64 - 1) < 0.1 and row["var_scaled"] == pytest.approx(row["var"] / 64)
    assert row["max_raw"] > row["max_scaled"] and row["keys_raw"] < row["keys_scaled"] <= 8
    # scaling by 1/√d scales ∂L/∂s by 1/√d at equal weights: check the measured gradient of one query by hand
    g = torch.Generator().manual_seed(1)
    q, k, up = torch.randn(1, 1, 4, generator=g), torch.randn(1, 3, 4, generator=g), torch.randn(1, 3, generator=g)
    q.requires_grad_(True)
    p = torch.softmax((q @ k.transpose(1, 2)).squeeze(1) / 2, -1)
    (p * up).sum().backward()
    ds = p * (up - (p * up).sum(-1, keepdim=True))  # softmax's Jacobian applied to the upstream gradient
    torch.testing.assert_close(q.grad.squeeze(1), (ds[:, :, None] * k).sum(1) / 2)


def test_general_score_learns_a_map_between_two_spaces():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, generator=g), torch.randn(7, 4, generator=g)
    train = retrieval_task(2000, 5, 7, 6, 4, a, b, generator=g)
    test = retrieval_task(500, 5, 7, 6, 4, a, b, generator=g)
    assert train.queries.shape == (2000, 1, 5) and train.keys.shape == (2000, 6, 7)
    score = GeneralScore(5, 7)
    before = retrieval_accuracy(score, test)
    losses = train_retrieval(score, train, steps=200, generator=g)
    assert losses[-1] < losses[0] and retrieval_accuracy(score, test) > max(0.6, before + 0.3)
    assert 0 <= retrieval_accuracy(AdditiveScore(5, 7, 8), test) <= 1


def test_retrieval_task_checks_the_maps():
    with pytest.raises(ShapeError, match="query_map"):
        retrieval_task(10, 5, 7, 6, 4, torch.zeros(4, 5), torch.zeros(7, 4))
    with pytest.raises(ShapeError, match="key_map"):
        retrieval_task(10, 5, 7, 6, 4, torch.zeros(5, 4), torch.zeros(7, 3))
    assert math.isfinite(scaling_row(4, n_queries=10)["grad_raw"])
