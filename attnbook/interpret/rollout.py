"""Attention rollout and attention flow (Abnar & Zuidema 2020): following attention through every layer.

One layer's weights say how much token i reads token j *in that layer*. After several layers, with a residual
connection around each, token i's state mixes the inputs along every path. Both methods model a layer as
``w·A + (1 − w)·I`` (attention plus the residual, rows renormalised):

* rollout multiplies these matrices from the first layer up — the share of each input in each output when the
  mixing is linear;
* flow treats them as capacities of a layered graph and asks for the maximum flow from an output to an input.

Inputs follow HuggingFace: a sequence of per-layer ``(batch, heads, n, n)`` tensors, as `attnbook.bert.BertModel`
and the chapter-6 ViT return them. Chapter 8 uses both on MiniLM and on the ViT.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attnbook.errors import ShapeError, check_ndim, check_tensor

HEAD_FUSIONS = ("mean", "max", "min")


def check_attentions(attentions: Sequence[Tensor], name: str = "attentions", atol: float = 1e-4) -> list[Tensor]:
    """Validate per-layer ``(batch, heads, n, n)`` attention weights; return them as a list.

    Every layer must have the first layer's shape, no weight may be negative, and every row must sum to one
    (a row of zeros — a fully masked query — is also accepted).
    """
    if isinstance(attentions, Tensor):
        raise TypeError(f"{name}: expected a sequence of per-layer (batch, heads, n, n) tensors, got one tensor "
                        f"of shape {tuple(attentions.shape)} (wrap a single layer in a list)")
    layers = list(attentions)
    if not layers:
        raise ValueError(f"{name}: expected at least one layer, got none")
    first = None
    for i, layer in enumerate(layers):
        check_tensor(f"{name}[{i}]", layer)
        check_ndim(f"{name}[{i}]", layer, 4, "(batch, heads, n, n)")
        if layer.shape[-1] != layer.shape[-2]:
            raise ShapeError(f"{name}[{i}]: expected square (batch, heads, n, n) self-attention, "
                             f"got shape {tuple(layer.shape)}")
        if first is None:
            first = tuple(layer.shape)
        elif tuple(layer.shape) != first:
            raise ShapeError(f"{name}[{i}]: expected the shape of layer 0, {first}, got {tuple(layer.shape)}")
        if not layer.is_floating_point():
            raise TypeError(f"{name}[{i}]: expected floating-point weights, got {layer.dtype}")
        if (layer < -atol).any():
            raise ValueError(f"{name}[{i}]: attention weights must be non-negative, found {layer.min().item():.3g}")
        sums = layer.sum(-1)
        bad = ((sums - 1).abs() > atol) & (sums.abs() > atol)
        if bad.any():
            worst = sums[bad][0].item()
            raise ValueError(f"{name}[{i}]: expected every row to sum to one (attention weights after softmax), "
                             f"found a row summing to {worst:.4g}")
    return layers


def fuse_heads(attention: Tensor, head_fusion: str = "mean") -> Tensor:
    """One ``(batch, n, n)`` matrix from ``(batch, heads, n, n)``: the heads' mean, maximum or minimum."""
    if head_fusion == "mean":
        return attention.mean(1)
    if head_fusion == "max":
        return attention.amax(1)
    if head_fusion == "min":
        return attention.amin(1)
    raise ValueError(f"head_fusion: expected one of {HEAD_FUSIONS}, got {head_fusion!r}")


def residual_attention(attention: Tensor, residual_weight: float = 0.5, head_fusion: str = "mean") -> Tensor:
    """``w·A + (1 − w)·I`` with heads fused and rows renormalised: one layer as rollout and flow see it."""
    if not 0.0 <= residual_weight <= 1.0:
        raise ValueError(f"residual_weight: expected a weight in [0, 1], got {residual_weight}")
    fused = fuse_heads(attention, head_fusion)
    eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
    mixed = residual_weight * fused + (1.0 - residual_weight) * eye
    return mixed / mixed.sum(-1, keepdim=True).clamp_min(1e-12)


def attention_rollout(attentions: Sequence[Tensor], residual_weight: float = 0.5,
                      head_fusion: str = "mean") -> Tensor:
    """Abnar & Zuidema's rollout: ``Ã_L ⋯ Ã_2 Ã_1`` with ``Ã_l = w·A_l + (1 − w)·I`` (rows renormalised).

    attentions: per-layer ``(batch, heads, n, n)``, first layer first → ``(batch, n, n)``; row i is how much
    each input token contributes to token i after the last layer. ``residual_weight=1`` ignores the residual.
    """
    layers = check_attentions(attentions)
    rollout = None
    for layer in layers:
        mixed = residual_attention(layer, residual_weight, head_fusion)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


def attention_flow(attentions: Sequence[Tensor], residual_weight: float = 0.5, head_fusion: str = "mean",
                   max_tokens: int = 40) -> Tensor:
    """Abnar & Zuidema's attention flow: maximum flow through the layered graph of ``Ã_l`` (networkx).

    Node (l, i) is token i after layer l (l = 0: the input); the edge from (l, i) to (l − 1, j) has capacity
    ``Ã_l[i, j]``. Entry (i, j) of the result is the maximum flow from output i to input j, each row then
    divided by its sum, as in the authors' code. ``(batch, n, n)``; cost grows fast with n, hence
    ``max_tokens``.
    """
    import networkx as nx

    layers = check_attentions(attentions)
    batch, _, n, _ = layers[0].shape
    if n > max_tokens:
        raise ValueError(f"attentions: attention flow solves n² max-flow problems; expected n <= max_tokens="
                         f"{max_tokens}, got n={n}")
    mixed = torch.stack([residual_attention(a, residual_weight, head_fusion) for a in layers], 1)
    capacity = mixed.detach().double().cpu().numpy()  # (batch, layers, n, n)
    depth = len(layers)
    flows = torch.zeros(batch, n, n, dtype=torch.float64)
    augmenting = nx.algorithms.flow.shortest_augmenting_path  # the same value as the authors' Edmonds–Karp
    for b in range(batch):
        graph = nx.DiGraph()
        for layer in range(depth):
            for i in range(n):
                for j in range(n):
                    graph.add_edge((layer + 1, i), (layer, j), capacity=float(capacity[b, layer, i, j]))
        for i in range(n):
            for j in range(n):
                flows[b, i, j] = nx.maximum_flow_value(graph, (depth, i), (0, j), flow_func=augmenting)
    flows = flows / flows.sum(-1, keepdim=True).clamp_min(1e-12)
    return flows.to(layers[0].dtype)
