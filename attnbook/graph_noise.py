"""Chapter 7's controlled experiment: GAT against GCN as the share of edges between classes grows.

`homophily_sweep` generates citation-like graphs (`generated_citation_graph`) whose edges join nodes of the
same class with a chosen probability, trains both models on each with their papers' recipes, and returns the
measured share of inter-class edges and the test accuracies, per level and seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from attnbook.data.graphs import generated_citation_graph, row_normalize
from attnbook.gat import NodeClassifierRecipe, to_sparse_csr, train_node_classifier


@dataclass
class NoisyGraphResult:
    """One level of the sweep: the homophily asked for, the measured share of inter-class edges, and the test
    accuracy of each model per seed."""

    homophily: float
    inter_class: float
    accuracy: dict[str, list[float]] = field(default_factory=dict)


def inter_class_share(edge_index: torch.Tensor, y: torch.Tensor) -> float:
    """Share of edges ``(2, E)`` whose two ends have different labels ``y (N,)``."""
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index: expected shape (2, E), got {tuple(edge_index.shape)}")
    return (y[edge_index[0]] != y[edge_index[1]]).float().mean().item()


def homophily_sweep(levels: Sequence[float], seeds: Sequence[int],
                    contenders: dict[str, tuple[Callable[[int, int], nn.Module], NodeClassifierRecipe]],
                    num_nodes: int = 800, num_features: int = 400) -> list[NoisyGraphResult]:
    """Train every contender ``(build(num_features, num_classes), recipe)`` on one generated graph per level
    and seed (graph seed = seed), 20 labels per class, ``num_nodes // 5`` validation and ``num_nodes // 2`` test
    nodes."""
    results = []
    for level in levels:
        result = NoisyGraphResult(level, 0.0, {name: [] for name in contenders})
        shares = []
        for seed in seeds:
            data = generated_citation_graph(num_nodes=num_nodes, num_features=num_features, homophily=level,
                                            seed=seed, num_val=num_nodes // 5, num_test=num_nodes // 2)
            data.x = row_normalize(data.x)
            shares.append(inter_class_share(data.edge_index, data.y))
            features = to_sparse_csr(data.x)
            for name, (build, recipe) in contenders.items():
                torch.manual_seed(seed)
                model = build(data.num_features, data.num_classes)
                run = train_node_classifier(model, data, features, recipe, desc=f"{name}, h={level}, seed {seed}")
                result.accuracy[name].append(run.test_acc)
        result.inter_class = sum(shares) / len(shares)
        results.append(result)
    return results
