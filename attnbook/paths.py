"""How far a signal travels: gradients against distance, and the layers needed to join two positions (chapter 3).

Vaswani et al. (2017) argue for self-attention with the *path length* between two positions. Two measurements
make the argument concrete:

- `gradient_by_distance`: ‖∂y_last / ∂x_{last−k}‖, how strongly the last output of a layer depends on the input
  k steps back. A recurrent network reaches it through k applications of its cell, so the gradient is a product of
  k Jacobians diag(f′(a_t))·W (the weight repeats; the Jacobian changes every step) and shrinks geometrically
  when those factors are small; gates slow the decay; one self-attention layer reaches every input directly.
- `layers_to_connect`: how many layers must be stacked before output 0 depends on input n−1 at all.

Shape legend: ``(batch, n, dim)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from attnbook.core import MultiHeadAttention, attention
from attnbook.errors import ShapeError

Layer = Callable[[Tensor], Tensor]


def sequence_layers(dim: int, num_heads: int = 4) -> dict[str, Layer]:
    """Freshly initialised float64 layers ``(1, n, dim)`` → ``(1, n, dim)``: plain RNN, LSTM, GRU, attention."""
    rnn = nn.RNN(dim, dim, batch_first=True, nonlinearity="tanh").double()
    lstm = nn.LSTM(dim, dim, batch_first=True).double()
    gru = nn.GRU(dim, dim, batch_first=True).double()
    mha = MultiHeadAttention(dim, num_heads).double()
    return {
        "plain RNN (tanh)": lambda x: rnn(x)[0],
        "LSTM": lambda x: lstm(x)[0],
        "GRU": lambda x: gru(x)[0],
        "self-attention": lambda x: mha(x, x, x)[0],
    }


def gradient_by_distance(layer: Layer, n: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
    """Frobenius norms ‖∂y_{n−1} / ∂x_{n−1−k}‖ for k = 0 … n−1, on one random input ``(1, n, dim)``.

    Each norm is the full Jacobian block of the last output with respect to one input position (``dim``
    backward passes), so no direction of the gradient is missed. Computed in float64 so that tiny values are
    measured rather than lost to underflow.
    """
    if n < 2 or dim < 1:
        raise ValueError(f"n, dim: expected n >= 2 and dim >= 1, got n={n}, dim={dim}")
    x = torch.randn(1, n, dim, generator=generator, dtype=torch.float64).requires_grad_()
    y = layer(x)
    if tuple(y.shape) != (1, n, dim):
        raise ShapeError(f"layer: expected an output of shape (1, {n}, {dim}), got {tuple(y.shape)}")
    rows = [torch.autograd.grad(y[0, -1, i], x, retain_graph=True)[0][0] for i in range(dim)]  # dim × (n, dim)
    jacobian = torch.stack(rows)  # (dim_out, n, dim_in)
    norms = jacobian.pow(2).sum(dim=(0, 2)).sqrt()  # (n,): one norm per input position
    return norms.flip(0)  # index k = distance from the last position


def layers_to_connect(make_layer: Callable[[int], Layer], n: int, max_layers: int = 300) -> int:
    """Stack ``make_layer(1), make_layer(2), …`` on a ``(1, 1, n)`` input until output 0 depends on input n−1.

    Returns the number of layers needed; raises if ``max_layers`` do not connect them.
    """
    x = torch.randn(1, 1, n, dtype=torch.float64, requires_grad=True)  # float64: no underflow in deep stacks
    y = x
    for depth in range(1, max_layers + 1):
        y = make_layer(depth)(y)
        (grad,) = torch.autograd.grad(y[0, 0, 0], x, retain_graph=True)
        if grad[0, 0, -1] != 0:
            return depth
    raise RuntimeError(f"make_layer: {max_layers} layers did not connect position 0 with position {n - 1}")


def attention_layer(depth: int) -> Layer:
    """A parameter-free self-attention layer over ``(1, 1, n)`` (positions are the length axis of the core)."""
    return lambda t: attention(t.transpose(1, 2), t.transpose(1, 2), t.transpose(1, 2))[0].transpose(1, 2)


def conv_layer(depth: int, k: int = 3, dilation: int = 1) -> nn.Module:
    """Output i reads inputs i, i + dilation, …, i + (k−1)·dilation (zero padding on the right)."""
    return nn.Sequential(nn.ConstantPad1d((0, (k - 1) * dilation), 0.0),
                         nn.Conv1d(1, 1, k, dilation=dilation, dtype=torch.float64))


def dilated_layer(depth: int, k: int = 3) -> nn.Module:
    """Layer ``depth`` of a dilated stack: dilations 1, k, k², … as in WaveNet and ByteNet."""
    return conv_layer(depth, k, dilation=k ** (depth - 1))
