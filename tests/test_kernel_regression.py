"""Nadaraya–Watson regression: the kernel formula, its identity with attention, and bandwidth learning."""

import pytest
import torch

from attnbook.errors import ShapeError
from attnbook.kernel_regression import NadarayaWatson, fit_bandwidth, leave_one_out_mask, nadaraya_watson


def data(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, _ = torch.sort(torch.rand(n, generator=g) * 5)
    return x, 2 * torch.sin(x) + 0.3 * torch.randn(n, generator=g)


@pytest.mark.parametrize("h", [0.1, 0.7, 3.0])
def test_matches_the_kernel_formula(h):
    x, y = data()
    queries = torch.linspace(-1, 6, 17)
    kernel = torch.exp(-0.5 * ((queries[:, None] - x[None, :]) / h) ** 2)
    prediction, weights = nadaraya_watson(queries, x, y, h)
    torch.testing.assert_close(prediction, (kernel / kernel.sum(1, keepdim=True)) @ y)
    torch.testing.assert_close(weights.sum(-1), torch.ones(17))


def test_limits_of_the_bandwidth():
    x, y = data()
    wide, _ = nadaraya_watson(x, x, y, 1e4)  # a huge bandwidth averages everything
    torch.testing.assert_close(wide, y.mean().expand_as(y), atol=1e-4, rtol=0)
    narrow, _ = nadaraya_watson(x, x, y, 1e-3)  # a tiny one returns each point's own target
    torch.testing.assert_close(narrow, y)


def test_leave_one_out_hides_the_point_itself():
    x, y = data(8)
    _, weights = nadaraya_watson(x, x, y, 1e-3, mask=leave_one_out_mask(8))
    assert torch.all(weights.diagonal() == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(8))


def test_learned_bandwidth_lowers_leave_one_out_loss_and_gradients_flow():
    x, y = data(40, seed=1)
    model, losses = fit_bandwidth(x, y, bandwidth=3.0, steps=100)
    assert losses[-1] < 0.7 * losses[0]
    assert model.bandwidth < 3.0
    fresh = NadarayaWatson(2.0)
    prediction, _ = fresh(x, x, y, mask=leave_one_out_mask(40))
    ((prediction - y) ** 2).mean().backward()
    assert fresh.log_bandwidth.grad is not None and torch.isfinite(fresh.log_bandwidth.grad)


def test_errors():
    x, y = data(5)
    with pytest.raises(ShapeError, match=r"y_train: expected shape \(5,\)"):
        nadaraya_watson(x, x, y[:4], 1.0)
    with pytest.raises(ShapeError, match=r"x_query: expected 1 dimensions"):
        nadaraya_watson(x[:, None], x, y, 1.0)
    with pytest.raises(ValueError, match=r"bandwidth: expected a positive number"):
        nadaraya_watson(x, x, y, 0.0)
    with pytest.raises(ValueError, match=r"bandwidth"):
        NadarayaWatson(-1.0)
