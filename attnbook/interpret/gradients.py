"""Gradient attributions: gradient × input and integrated gradients (Sundararajan et al. 2017).

Both score every input feature by how much it moves one output. ``forward`` maps ``inputs (batch, ...)`` to
``(batch,)`` scores or ``(batch, classes)`` logits, in which case ``target`` picks the class (an int for every
row, or a ``(batch,)`` tensor of ints). Integrated gradients averages the gradient along the straight path from
a baseline to the input with the Gauss–Legendre rule on [0, 1] (or a Riemann rule), as captum does, so both functions
agree with captum's ``InputXGradient`` and ``IntegratedGradients`` (a test dependency only). For text, the
inputs are the word vectors: `embedding_forward` feeds chosen vectors through a model in place of its embedding
layer's output. Chapter 8 compares these attributions with attention.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from attnbook.errors import DTypeError, ShapeError, check_tensor

Target = int | Tensor | None


def select_target(output: Tensor, target: Target, batch: int) -> Tensor:
    """The ``(batch,)`` scores to explain: ``output`` itself, or its column ``target`` for each row."""
    if output.dim() == 0 or output.shape[0] != batch:
        raise ShapeError(f"forward: expected an output of shape (batch,) or (batch, classes) with batch={batch}, "
                         f"got {tuple(output.shape)}")
    if output.dim() == 1:
        if target is not None:
            raise ValueError(f"target: forward returns one score per row, shape {tuple(output.shape)}; "
                             f"expected target=None, got {target!r}")
        return output
    if output.dim() != 2:
        raise ShapeError(f"forward: expected an output of shape (batch,) or (batch, classes), "
                         f"got {tuple(output.shape)}")
    classes = output.shape[1]
    if target is None:
        raise ValueError(f"target: forward returns {classes} classes per row; expected a class index, got None")
    index = torch.as_tensor(target, device=output.device)
    if index.is_floating_point() or index.dtype == torch.bool:
        raise DTypeError(f"target: expected an integer class index, got dtype {index.dtype}")
    if index.dim() == 0:
        index = index.expand(batch)
    if tuple(index.shape) != (batch,):
        raise ShapeError(f"target: expected an int or a (batch,) = ({batch},) tensor, got shape {tuple(index.shape)}")
    if (index < 0).any() or (index >= classes).any():
        raise IndexError(f"target: expected class indices in [0, {classes}), got {index.tolist()}")
    return output.gather(1, index.long()[:, None]).squeeze(1)


def _check_inputs(inputs: object) -> Tensor:
    inputs = check_tensor("inputs", inputs)
    if not inputs.is_floating_point():
        raise DTypeError(f"inputs: expected a floating-point tensor (batch, ...), got {inputs.dtype}")
    if inputs.dim() < 1:
        raise ShapeError("inputs: expected shape (batch, ...), got a scalar")
    return inputs


def gradient_x_input(forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Target = None) -> Tensor:
    """``inputs · ∂f/∂inputs`` for f = ``forward(inputs)`` (column ``target``): same shape as ``inputs``."""
    inputs = _check_inputs(inputs)
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = select_target(forward(x), target, inputs.shape[0])
        (grad,) = torch.autograd.grad(scores.sum(), x)
    return (grad * inputs).detach()


RULES = ("gausslegendre", "riemann_middle", "riemann_left", "riemann_right", "riemann_trapezoid")


def quadrature(steps: int, method: str = "gausslegendre") -> tuple[Tensor, Tensor]:
    """Nodes α_k in [0, 1] and weights w_k of a ``steps``-point rule for ∫₀¹, named as captum names them.

    Gauss–Legendre is exact for polynomials of degree < 2·steps but can miss a sharp step in the integrand;
    the midpoint rule converges slowly but surely. (captum's trapezoid weights sum to (n − 1)/n; so do ours.)
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy(0.5 * (nodes + 1.0)), torch.from_numpy(0.5 * weights)
    if method not in RULES:
        raise ValueError(f"method: expected one of {RULES}, got {method!r}")
    if method == "riemann_trapezoid":  # captum: n points from 0 to 1, weights 1/n with halved ends
        if steps < 2:
            raise ValueError(f"steps: the trapezoid rule needs at least 2 points, got {steps}")
        weights = np.full(steps, 1.0 / steps)
        weights[[0, -1]] /= 2
        return torch.from_numpy(np.linspace(0.0, 1.0, steps)), torch.from_numpy(weights)
    offset = {"riemann_middle": 0.5, "riemann_left": 0.0, "riemann_right": 1.0}[method]
    alphas = (np.arange(steps) + offset) / steps
    return torch.from_numpy(alphas), torch.from_numpy(np.full(steps, 1.0 / steps))


def integrated_gradients(forward: Callable[[Tensor], Tensor], inputs: Tensor, baseline: Tensor | float | None = None,
                         target: Target = None, steps: int = 32, method: str = "gausslegendre") -> Tensor:
    """``(x − x') · ∫₀¹ ∂f/∂x (x' + α(x − x')) dα`` by a ``steps``-point rule: same shape as ``inputs``.

    ``method`` is the rule, Gauss–Legendre by default as in captum (`quadrature` lists the others).
    ``baseline`` x' defaults to zeros; a number or a tensor of ``inputs``' shape (or one row of it) also works.
    The ``steps`` points of the path go through ``forward`` as one batch of ``steps · batch`` rows, ordered
    point by point (rows 0..batch−1 at the first node, and so on). Summed over features, the attributions
    add up to f(x) − f(x') up to the rule's error (completeness).
    """
    inputs = _check_inputs(inputs)
    if baseline is None:
        baseline = torch.zeros_like(inputs)
    elif isinstance(baseline, (int, float)):
        baseline = torch.full_like(inputs, float(baseline))
    else:
        baseline = check_tensor("baseline", baseline).to(inputs.dtype)
        if tuple(baseline.shape) == tuple(inputs.shape[1:]):
            baseline = baseline.expand_as(inputs)
        if tuple(baseline.shape) != tuple(inputs.shape):
            raise ShapeError(f"baseline: expected the shape of inputs {tuple(inputs.shape)} (or of one row), "
                             f"got {tuple(baseline.shape)}")
    alphas, weights = quadrature(steps, method)
    batch = inputs.shape[0]
    shape = (steps,) + (1,) * inputs.dim()
    alphas = alphas.to(inputs.dtype).view(shape)
    delta = (inputs - baseline).detach()
    path = (baseline.detach().unsqueeze(0) + alphas * delta.unsqueeze(0)).flatten(0, 1).requires_grad_(True)
    if isinstance(target, (list, tuple)):
        target = torch.tensor(target)
    if target is not None and isinstance(target, Tensor) and target.dim() == 1:
        target = target.repeat(steps)
    with torch.enable_grad():
        scores = select_target(forward(path), target, steps * batch)
        (grads,) = torch.autograd.grad(scores.sum(), path)
    grads = grads.view(steps, *inputs.shape)
    average = (weights.to(inputs.dtype).view(shape) * grads).sum(0)
    return (average * delta).detach()


def embedding_forward(model: Callable[..., Tensor], embedding: nn.Embedding, input_ids: Tensor,
                      **inputs: Tensor) -> Callable[[Tensor], Tensor]:
    """``forward(vectors)``: run ``model(input_ids, **inputs)`` with ``embedding``'s output replaced by vectors.

    vectors ``(r · batch, n, dim)``: the ids and the other ``(batch, ...)`` inputs are repeated r times (as
    integrated gradients stacks its path points), so the attributions of text models are per word vector.
    """
    if not isinstance(embedding, nn.Embedding):
        raise TypeError(f"embedding: expected a torch.nn.Embedding, got {type(embedding).__name__}")
    batch = input_ids.shape[0]

    def forward(vectors: Tensor) -> Tensor:
        if vectors.shape[0] % batch or tuple(vectors.shape[1:]) != (*input_ids.shape[1:], embedding.embedding_dim):
            raise ShapeError(f"vectors: expected (r·{batch}, {', '.join(map(str, input_ids.shape[1:]))}, "
                             f"{embedding.embedding_dim}), got {tuple(vectors.shape)}")
        repeats = vectors.shape[0] // batch

        def repeat(t: Tensor) -> Tensor:
            return t.repeat(repeats, *([1] * (t.dim() - 1)))

        handle = embedding.register_forward_hook(lambda module, args, output: vectors)
        try:
            return model(repeat(input_ids), **{k: repeat(v) for k, v in inputs.items()})
        finally:
            handle.remove()

    return forward
