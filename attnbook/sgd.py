"""Walking downhill: the stochastic gradient descent every chapter relies on (the appendix, chapter 10).

Loss landscapes small enough to see whole, a path runner that walks many starts at once (with a step-size
schedule and gradient noise), divergence detection and restarts, and the step-size schedules of
``torch.optim.lr_scheduler`` written as formulas. The real network is in `attnbook.sgd_network`.
Points are ``(runs, dim)``; a landscape maps them to ``(runs,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attnbook.errors import ShapeError, check_ndim

Landscape = Callable[[Tensor], Tensor]
Schedule = float | Callable[[int], float]


def check_points(name: str, points: Tensor, dim: int | None = None) -> None:
    """Raise `ShapeError` unless ``points`` is a ``(runs, dim)`` floating tensor (``dim`` checked if given)."""
    check_ndim(name, points, 2, "(runs, dim)")
    if dim is not None and points.shape[1] != dim:
        raise ShapeError(f"{name}: expected shape (runs, {dim}), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {points.dtype}")


class Quadratic:
    """The bowl f(x) = ½ Σᵢ hᵢ xᵢ²; the curvatures hᵢ are its Hessian's eigenvalues, L = max hᵢ.

    Gradient descent with step η multiplies coordinate i by (1 − η hᵢ) each step: it converges iff η < 2/L.
    """

    def __init__(self, curvatures: Sequence[float]) -> None:
        self.curvatures = torch.as_tensor(curvatures, dtype=torch.float64)
        if self.curvatures.dim() != 1 or not (self.curvatures > 0).all():
            raise ValueError(f"curvatures: expected a 1-D sequence of positive numbers, got {list(curvatures)}")

    def __call__(self, x: Tensor) -> Tensor:
        check_points("x", x, len(self.curvatures))
        return 0.5 * (self.curvatures.to(x.dtype) * x**2).sum(-1)

    @property
    def stable_step(self) -> float:
        """The bound 2/L above which gradient descent diverges."""
        return 2.0 / self.curvatures.max().item()


class SharpAndWide:
    """Two wells in a bowl (2-D): a narrow, sharp one and a wide one that is a little deeper.

    f(x) = ½ k ‖x‖² − Σ_j d_j exp(−‖x − c_j‖² / (2 w_j²)), well 0 the sharp one, well 1 the wide one.
    """

    def __init__(self, centres=((-1.0, 0.0), (1.5, 0.0)), depths=(0.8, 1.2), widths=(0.15, 1.0), bowl=0.3):
        self.centres = torch.as_tensor(centres, dtype=torch.float64)
        self.depths = torch.as_tensor(depths, dtype=torch.float64)
        self.widths = torch.as_tensor(widths, dtype=torch.float64)
        self.bowl = bowl
        if self.centres.shape != (2, 2) or self.depths.shape != (2,) or self.widths.shape != (2,):
            raise ValueError("centres, depths, widths: expected two wells, ((2, 2), (2,), (2,))")

    def __call__(self, x: Tensor) -> Tensor:
        check_points("x", x, 2)
        squared = ((x[:, None, :] - self.centres.to(x.dtype)) ** 2).sum(-1)  # (runs, 2 wells)
        wells = self.depths.to(x.dtype) * torch.exp(-squared / (2 * self.widths.to(x.dtype) ** 2))
        return 0.5 * self.bowl * (x**2).sum(-1) - wells.sum(-1)

    def basin(self, x: Tensor) -> Tensor:
        """Which well each point lies in: 0 sharp, 1 wide, −1 neither (farther than two widths from both)."""
        check_points("x", x, 2)
        distance = torch.cdist(x.to(torch.float64), self.centres) / self.widths  # in widths, (runs, 2)
        inside = distance < 2.0
        return torch.where(inside[:, 0], 0, torch.where(inside[:, 1], 1, -1))


def ring(x: Tensor) -> Tensor:
    """f(x) = (‖x‖² − 1)² / 4: every point of the unit circle is a minimum; far away the walls steepen like ‖x‖³."""
    check_points("x", x)
    return ((x**2).sum(-1) - 1) ** 2 / 4


def gradient(landscape: Landscape, x: Tensor) -> tuple[Tensor, Tensor]:
    """The losses ``(runs,)`` and their gradients ``(runs, dim)`` at ``x``, by autograd."""
    x = x.detach().requires_grad_(True)
    loss = landscape(x)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _at(schedule: Schedule | Tensor, step: int) -> float | Tensor:
    if isinstance(schedule, Tensor):
        return schedule[:, None]  # one value per run: (runs, 1)
    return schedule(step) if callable(schedule) else float(schedule)


@dataclass
class Path:
    """Where each run was after each step: ``points`` (steps + 1, runs, dim), ``losses`` (steps + 1, runs)."""

    points: Tensor
    losses: Tensor

    @property
    def diverged(self) -> Tensor:
        """``(runs,)``: True where the run blew up (see `diverged`)."""
        return diverged(self.losses)


def descend(
    landscape: Landscape,
    start: Tensor,
    lr: Schedule | Tensor,
    steps: int,
    *,
    noise: Schedule = 0.0,
    generator: torch.Generator | None = None,
) -> Path:
    """Walk every start downhill: x ← x − η_t (∇f(x) + σ_t ε), ε ~ N(0, I).

    ``lr`` and ``noise`` are numbers or schedules (step → value); ``lr`` may also be a ``(runs,)`` tensor, one
    step size per run. Gradient noise stands for the minibatch's error (its standard deviation shrinks like
    1/√batch). A run whose loss stops being finite stays where it broke.
    """
    check_points("start", start)
    if isinstance(lr, Tensor) and lr.shape != (len(start),):
        raise ShapeError(f"lr: expected a number, a schedule or shape ({len(start)},), got {tuple(lr.shape)}")
    if steps < 0:
        raise ValueError(f"steps: expected a non-negative number of steps, got {steps}")
    x = start.detach().clone()
    points, losses = [x], []
    for step in range(steps + 1):
        loss, grad = gradient(landscape, x)
        losses.append(loss)
        if step == steps:
            break
        sigma = _at(noise, step)
        if sigma:
            grad = grad + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        moved = x - _at(lr, step) * grad
        x = torch.where(torch.isfinite(moved).all(-1, keepdim=True) & torch.isfinite(loss)[:, None], moved, x)
        points.append(x)
    return Path(torch.stack(points), torch.stack(losses))


def diverged(losses: Tensor | Sequence[float], factor: float = 1e3) -> Tensor:
    """True where a loss curve blew up: a non-finite loss, or one above ``factor`` × its starting loss.

    ``losses`` is ``(steps,)`` (one curve; a 0-d answer) or ``(steps, runs)`` (one answer per run).
    """
    losses = torch.as_tensor(losses, dtype=torch.float64)
    if losses.dim() not in (1, 2) or len(losses) == 0:
        raise ShapeError(f"losses: expected shape (steps,) or (steps, runs) with steps > 0, got {tuple(losses.shape)}")
    exploded = losses > factor * losses[0].abs().clamp_min(1e-12)
    return (~torch.isfinite(losses) | exploded).any(0)


@dataclass
class Attempt:
    """One try of `restart_on_divergence`: its step size, its loss curve and whether it blew up."""

    lr: float
    losses: Tensor
    diverged: bool


def restart_on_divergence(
    attempt: Callable[[int, float], Sequence[float] | Tensor], lr: float, shrink: float = 0.3, max_tries: int = 5
) -> list[Attempt]:
    """Call ``attempt(try_index, lr)`` (a fresh random start each try) until a run does not diverge.

    After each blow-up the step size is multiplied by ``shrink``. Returns every attempt, the good one last.
    """
    if not 0 < shrink < 1:
        raise ValueError(f"shrink: expected a factor in (0, 1), got {shrink}")
    attempts: list[Attempt] = []
    for index in range(max_tries):
        losses = torch.as_tensor(attempt(index, lr), dtype=torch.float64)
        attempts.append(Attempt(lr, losses, bool(diverged(losses))))
        if not attempts[-1].diverged:
            return attempts
        lr *= shrink
    raise RuntimeError(f"max_tries: all {max_tries} attempts diverged, the last with lr = {attempts[-1].lr:g}")


def cyclic_lr(step: int, base_lr: float, max_lr: float, step_size_up: int, step_size_down: int | None = None) -> float:
    """Smith's triangular cycle (``CyclicLR``, mode "triangular"): up from base_lr to max_lr, then back down."""
    down = step_size_up if step_size_down is None else step_size_down
    period = step_size_up + down
    phase = step % period
    rise = phase / step_size_up if phase <= step_size_up else 1 - (phase - step_size_up) / down
    return base_lr + (max_lr - base_lr) * rise


def linear_warmup(step: int, base_lr: float, start_factor: float, total_iters: int, end_factor: float = 1.0) -> float:
    """Warm-up (``LinearLR``): the factor grows linearly from start_factor to end_factor over total_iters steps."""
    return base_lr * (start_factor + (end_factor - start_factor) * min(step, total_iters) / total_iters)


def cosine_warm_restarts(step: int, base_lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> float:
    """SGDR (``CosineAnnealingWarmRestarts``): a half cosine from base_lr to eta_min, restarted; cycle i lasts
    T_0 · T_mult^i steps."""
    t_cur, t_i = step, T_0
    while t_cur >= t_i:  # walk through the finished cycles (integers: no rounding of a logarithm)
        t_cur, t_i = t_cur - t_i, t_i * T_mult
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def scheduler_lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The step size a PyTorch scheduler gives its optimizer's first group at steps 0 .. steps − 1."""
    optimizer = scheduler.optimizer
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def draw_landscape(ax, landscape: Landscape, xlim: tuple[float, float], ylim: tuple[float, float],
                   levels: int = 25, resolution: int = 121) -> None:
    """Contours of a 2-D landscape on a matplotlib axis, with the axes labelled as the two parameters."""
    xs = torch.linspace(*xlim, resolution, dtype=torch.float64)
    ys = torch.linspace(*ylim, resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (resolution, resolution, 2)
    values = landscape(grid.reshape(-1, 2)).reshape(resolution, resolution)
    ax.contour(xs.numpy(), ys.numpy(), values.numpy(), levels=levels, cmap="viridis", linewidths=0.7)
    ax.set(xlim=xlim, ylim=ylim, xlabel="parameter $x_1$", ylabel="parameter $x_2$")
