"""Which supporting fact each memory hop reads: chapter 1's per-hop analysis of bAbI task 2.

"Where is the apple?" has two supporting facts: the sentence that moved the *object* (someone got, took,
dropped or discarded it) and the sentence that moved the *person* holding it. `fact_roles` marks the memory
slot of each; `hop_mass` measures how much attention each hop puts on a set of slots, and `hop_hits` how often
a hop's largest weight falls on one of them. Weights ``(N, hops, M)``, masks ``(N, M)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnbook.data.babi import QA
from attnbook.errors import ShapeError, check_ndim


def fact_roles(items: list[QA], memory_size: int) -> tuple[Tensor, Tensor]:
    """Slots ``(N, memory_size)`` of the object fact (the supporting sentence that names the question's last
    word, the object) and of the other supporting facts, in the memory layout of `vectorize` (slot 0 = the
    latest sentence)."""
    objects = torch.zeros(len(items), memory_size, dtype=torch.bool)
    others = torch.zeros(len(items), memory_size, dtype=torch.bool)
    for i, qa in enumerate(items):
        for s in qa.supporting:
            slot = len(qa.story) - 1 - s
            if slot < memory_size:
                target = objects if qa.question[-1] in qa.story[s] else others
                target[i, slot] = True
    return objects, others


def _check(weights: Tensor, slots: Tensor) -> None:
    check_ndim("weights", weights, 3, "(questions, hops, memory slots)")
    if slots.shape != (weights.shape[0], weights.shape[2]):
        raise ShapeError(f"slots: expected shape {(weights.shape[0], weights.shape[2])} "
                         f"(questions, memory slots of weights), got {tuple(slots.shape)}")


def hop_mass(weights: Tensor, slots: Tensor) -> Tensor:
    """Mean attention ``(hops,)`` that each hop puts on the marked slots."""
    _check(weights, slots)
    return (weights * slots[:, None, :]).sum(-1).mean(0)


def hop_hits(weights: Tensor, slots: Tensor) -> Tensor:
    """Share of questions ``(hops,)`` whose hop puts its largest weight on a marked slot."""
    _check(weights, slots)
    top = weights.argmax(-1)  # (N, hops)
    return slots.gather(1, top).float().mean(0)
