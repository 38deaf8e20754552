"""Errors that name what was wrong: the argument, the expected and the actual shape or type."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch


class ShapeError(ValueError):
    """An argument's shape does not fit the contract of the function it was passed to."""


class DTypeError(TypeError, ValueError):
    """An argument has the wrong dtype (a ``TypeError`` that is also a ``ValueError``)."""


def check_shape(name: str, tensor: torch.Tensor, expected: Sequence[int | None]) -> None:
    """Raise `ShapeError` unless ``tensor.shape`` matches ``expected`` (``None`` matches any size).

    >>> check_shape("query", torch.zeros(2, 3), (2, None))
    """
    actual = tuple(tensor.shape)
    shown = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
    if len(actual) != len(expected) or any(e is not None and e != a for e, a in zip(expected, actual)):
        raise ShapeError(f"{name}: expected shape {shown}, got {actual}")


def check_ndim(name: str, tensor: torch.Tensor, ndim: int, legend: str) -> None:
    """Raise `ShapeError` unless ``tensor`` has exactly ``ndim`` dimensions (``legend`` names them)."""
    if tensor.dim() != ndim:
        raise ShapeError(f"{name}: expected {ndim} dimensions {legend}, got shape {tuple(tensor.shape)}")


def check_min_ndim(name: str, tensor: torch.Tensor, ndim: int, legend: str) -> None:
    """Raise `ShapeError` unless ``tensor`` has at least ``ndim`` dimensions."""
    if tensor.dim() < ndim:
        raise ShapeError(f"{name}: expected at least {ndim} dimensions {legend}, got shape {tuple(tensor.shape)}")


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Raise `TypeError` unless ``value`` is a tensor; return it."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def broadcast_shapes(names: Sequence[str], shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """`torch.broadcast_shapes`, but the error names the arguments and their shapes."""
    try:
        return tuple(torch.broadcast_shapes(*[torch.Size(s) for s in shapes]))
    except RuntimeError:
        listed = ", ".join(f"{n} {tuple(s)}" for n, s in zip(names, shapes))
        raise ShapeError(f"batch shapes do not broadcast: {listed}") from None


def resolve_choice(name: str, value: object, table: Mapping[str, Callable], signature: str) -> Callable:
    """A name from ``table`` or a callable, as a callable; errors name the argument, the choices and the signature.

    The core's ``score=`` and ``normalize=`` arguments take either form (a variant passes its own function).
    """
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"{name}: expected one of {sorted(table)} or a callable, got {value!r}")
        return table[value]
    if not callable(value):
        raise TypeError(f"{name}: expected a name or a callable {signature}, got {type(value).__name__}")
    return value
