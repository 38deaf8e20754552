"""SGD appendix: landscapes, paths, divergence and restarts, schedules against torch.optim.lr_scheduler,
hidden-unit matching, and the batched MLPs against separate runs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, CyclicLR, LinearLR

from attnbook.errors import ShapeError
from attnbook.sgd import (
    Quadratic,
    SharpAndWide,
    cosine_warm_restarts,
    cyclic_lr,
    descend,
    diverged,
    gradient,
    linear_warmup,
    restart_on_divergence,
    ring,
    scheduler_lrs,
)
from attnbook.sgd_network import (
    MLPs,
    digits,
    evaluate,
    evaluate_members,
    fit_members,
    match_hidden_units,
    matched_distance,
    minibatches,
    mlp,
    parameters_vector,
    permute_hidden,
)


def _optimizer(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


# --- schedules equal PyTorch's -------------------------------------------------------------------------------

@pytest.mark.parametrize("up, down", [(5, None), (4, 7), (1, 1)])
def test_cyclic_lr_equals_torch(up, down):
    torch_lrs = scheduler_lrs(CyclicLR(_optimizer(), 0.01, 0.3, step_size_up=up, step_size_down=down), 40)
    ours = [cyclic_lr(t, 0.01, 0.3, up, down) for t in range(40)]
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(torch_lrs), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("start, end, total", [(0.1, 1.0, 10), (0.02, 1.0, 1), (1.0, 0.25, 6)])
def test_linear_warmup_equals_torch(start, end, total):
    torch_lrs = scheduler_lrs(LinearLR(_optimizer(0.5), start, end, total_iters=total), 25)
    ours = [linear_warmup(t, 0.5, start, total, end) for t in range(25)]
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(torch_lrs), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("t0, mult, eta_min", [(7, 1, 0.0), (3, 2, 0.01), (2, 3, 0.0)])
def test_cosine_warm_restarts_equals_torch(t0, mult, eta_min):
    torch_lrs = scheduler_lrs(CosineAnnealingWarmRestarts(_optimizer(0.4), t0, mult, eta_min), 60)
    ours = [cosine_warm_restarts(t, 0.4, t0, mult, eta_min) for t in range(60)]
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(torch_lrs), rtol=1e-6, atol=1e-9)


# --- landscapes and paths -------------------------------------------------------------------------------------

def test_gradient_of_the_quadratic_is_h_times_x():
    bowl = Quadratic([1.0, 10.0])
    x = torch.tensor([[2.0, -1.0], [0.5, 0.25]], dtype=torch.float64)
    loss, grad = gradient(bowl, x)
    torch.testing.assert_close(grad, x * torch.tensor([1.0, 10.0], dtype=torch.float64))
    torch.testing.assert_close(loss, torch.tensor([2.0 + 5.0, 0.125 + 0.3125], dtype=torch.float64))


@pytest.mark.parametrize("curvatures", [[1.0, 10.0], [0.3, 4.0, 2.5]])
def test_gradient_descent_on_a_quadratic_converges_below_two_over_l_and_diverges_above(curvatures):
    bowl = Quadratic(curvatures)
    assert bowl.stable_step == pytest.approx(2 / max(curvatures))
    start = torch.ones(1, len(curvatures), dtype=torch.float64)
    below = descend(bowl, start, 0.97 * bowl.stable_step, 400)
    above = descend(bowl, start, 1.03 * bowl.stable_step, 400)
    assert below.losses[-1].item() < 1e-3 * below.losses[0].item() and not below.diverged.item()
    assert above.diverged.item()
    # each step multiplies the stiffest coordinate by (1 - lr L): the path matches the closed form
    lr = 0.7 * bowl.stable_step
    path = descend(bowl, start, lr, 5)
    factor = 1 - lr * torch.tensor(curvatures, dtype=torch.float64)
    torch.testing.assert_close(path.points[5, 0], factor**5)


def test_descend_noise_schedule_and_shapes():
    start = torch.zeros(6, 2, dtype=torch.float64)
    quiet = descend(ring, start + 0.5, 0.1, 10)
    assert quiet.points.shape == (11, 6, 2) and quiet.losses.shape == (11, 6)
    assert torch.equal(quiet.points[:, 0], quiet.points[:, 5])  # no noise: identical starts walk together
    noisy = descend(ring, start + 0.5, 0.1, 10, noise=1.0, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(noisy.points[:, 0], noisy.points[:, 5])
    schedule = descend(ring, start + 0.5, lambda t: 0.1 if t < 3 else 0.0, 10)
    assert torch.equal(schedule.points[3], schedule.points[-1])  # a zero step size stands still
    per_run = descend(ring, start + 0.5, torch.tensor([0.0, 0.1, 0.1, 0.2, 0.3, 0.05], dtype=torch.float64), 10)
    for run, lr in ((0, 0.0), (3, 0.2)):
        torch.testing.assert_close(per_run.points[:, run], descend(ring, start[:1] + 0.5, lr, 10).points[:, 0])
    with pytest.raises(ShapeError, match=r"lr: expected a number, a schedule or shape \(6,\)"):
        descend(ring, start, torch.ones(3), 2)
    with pytest.raises(ShapeError, match=r"start: expected 2 dimensions"):
        descend(ring, torch.zeros(2), 0.1, 3)
    with pytest.raises(ValueError, match="steps: expected a non-negative"):
        descend(ring, start, 0.1, -1)
    with pytest.raises(ShapeError, match=r"x: expected shape \(runs, 2\)"):
        Quadratic([1.0, 2.0])(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="start: expected a floating-point"):
        descend(ring, torch.zeros(2, 2, dtype=torch.long), 0.1, 3)
    with pytest.raises(ValueError, match="curvatures: expected"):
        Quadratic([1.0, -2.0])


def test_sharp_and_wide_basins():
    wells = SharpAndWide()
    at = torch.cat([wells.centres, torch.tensor([[0.0, 5.0]], dtype=torch.float64)])
    assert wells.basin(at).tolist() == [0, 1, -1]
    settled = descend(wells, wells.centres + 0.05, 0.02, 1000).points[-1]
    assert wells.basin(settled).tolist() == [0, 1]
    low = wells(settled)
    assert low[1] < low[0]  # the wide well is the deeper one
    _, grad = gradient(wells, settled)
    assert grad.norm(dim=-1).max() < 1e-6
    with pytest.raises(ValueError, match="centres, depths, widths"):
        SharpAndWide(depths=(1.0,))


# --- divergence and restarts ----------------------------------------------------------------------------------

def test_diverged_flags_non_finite_and_exploding_curves():
    assert not diverged([3.0, 2.0, 1.0])
    assert diverged([1.0, float("nan")]) and diverged([1.0, float("inf")]) and diverged([1.0, 2e3])
    per_run = diverged(torch.tensor([[1.0, 1.0, 1.0], [0.5, 5e3, float("nan")]]))
    assert per_run.tolist() == [False, True, True]
    with pytest.raises(ShapeError, match="losses: expected shape"):
        diverged(torch.zeros(2, 2, 2))


def test_restart_on_divergence_shrinks_the_step_until_a_run_survives():
    far = torch.tensor([[2.5, 2.0]], dtype=torch.float64)
    tries = restart_on_divergence(lambda i, lr: descend(ring, far * (1 + 0.1 * i), lr, 100).losses[:, 0],
                                  lr=0.5, shrink=0.3)
    assert [t.diverged for t in tries[:-1]] == [True] * (len(tries) - 1) and not tries[-1].diverged
    assert len(tries) >= 2 and tries[1].lr == pytest.approx(0.15)
    assert tries[-1].losses[-1] < 1e-6
    with pytest.raises(RuntimeError, match="max_tries: all 2 attempts diverged"):
        restart_on_divergence(lambda i, lr: [1.0, float("nan")], lr=1.0, max_tries=2)
    with pytest.raises(ValueError, match="shrink: expected"):
        restart_on_divergence(lambda i, lr: [1.0], lr=1.0, shrink=1.5)


# --- the network: batched members, matching -------------------------------------------------------------------

def test_mlps_members_start_and_train_exactly_as_separate_runs():
    x, y, _, _ = digits()
    x, y = x[:96], y[:96]
    seeds = [3, 5]
    batched = MLPs(seeds, hidden=8)
    for i, seed in enumerate(seeds):
        torch.testing.assert_close(batched.member(i)(x), mlp(8, seed)(x))
    optimizer = torch.optim.SGD(batched.parameters(), lr=0.2, momentum=0.9)
    history = fit_members(batched, optimizer, x, y, epochs=3, batch_size=32, generator=torch.Generator().manual_seed(0))
    assert history.shape == (3, 2)
    # replay member 1 alone with the same batches (regenerate the index stream)
    single = mlp(8, seeds[1])
    stream = minibatches(len(y), 2, 32, torch.Generator().manual_seed(0))
    single_opt = torch.optim.SGD(single.parameters(), lr=0.2, momentum=0.9)
    for _ in range(3):
        for index in stream():
            single_opt.zero_grad()
            F.cross_entropy(single(x[index[1]]), y[index[1]]).backward()
            single_opt.step()
    torch.testing.assert_close(batched.member(1)(x), single(x), rtol=1e-4, atol=1e-5)
    losses, accuracies = evaluate_members(batched, x, y)
    loss1, accuracy1 = evaluate(single, x, y)
    assert losses[1].item() == pytest.approx(loss1, rel=1e-4) and accuracies[1].item() == pytest.approx(accuracy1)
    with pytest.raises(ShapeError, match=r"x: expected shape \(2, batch, 64\)"):
        batched(x)
    with pytest.raises(ShapeError, match=r"y: expected shape \(96\), got \(5,\)"):
        evaluate_members(batched, x, y[:5])
    with pytest.raises(ShapeError, match=r"x: expected shape \(\*, 64\)"):
        fit_members(batched, optimizer, x[:, :10], y, 1, 32, torch.Generator())
    with pytest.raises(ValueError, match="seeds: expected at least one"):
        MLPs([])
    with pytest.raises(ValueError, match="batch_size: expected"):
        minibatches(10, 2, 0, torch.Generator())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_undoes_any_permutation_of_hidden_units(seed):
    generator = torch.Generator().manual_seed(seed)
    net = mlp(12, seed)
    order = torch.randperm(12, generator=generator)
    shuffled = permute_hidden(net, order)
    x = torch.rand(5, 64, generator=generator)
    torch.testing.assert_close(shuffled(x), net(x))  # relabelling hidden units keeps the function
    recovered = match_hidden_units(net, shuffled)
    assert torch.equal(order[recovered], torch.arange(12))
    before, after = matched_distance(net, shuffled)
    assert before > 1.0 and after == pytest.approx(0.0, abs=1e-6)
    # and matching is invariant to how the other network's units happen to be labelled
    other = mlp(12, seed + 10)
    relabelled = permute_hidden(other, torch.randperm(12, generator=generator))
    assert matched_distance(net, other)[1] == pytest.approx(matched_distance(net, relabelled)[1], rel=1e-6)
    assert matched_distance(net, other)[1] < matched_distance(net, other)[0]


def test_matching_errors_name_the_argument():
    with pytest.raises(ValueError, match="order: expected a permutation of range"):
        permute_hidden(mlp(4), torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="other: expected hidden units shaped like"):
        match_hidden_units(mlp(4), mlp(5))
    with pytest.raises(ValueError, match="model: expected an MLP with two Linear layers"):
        match_hidden_units(torch.nn.Linear(3, 3), mlp(4))
    with pytest.raises(ValueError, match="test_fraction: expected"):
        digits(test_fraction=1.5)


def test_digits_split_is_disjoint_and_complete():
    x_train, y_train, x_test, y_test = digits(0.25, seed=1)
    assert x_train.shape[1] == 64 and len(x_train) + len(x_test) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert set(y_train.tolist()) == set(range(10)) == set(y_test.tolist())
    assert math.isclose(len(x_test) / 1797, 0.25, abs_tol=1e-3)
    assert parameters_vector(mlp(8)).numel() == 64 * 8 + 8 + 8 * 10 + 10
