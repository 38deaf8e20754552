"""One plotting style for the book, and the attention heatmap every chapter draws."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

STYLE = {
    "figure.figsize": (6.0, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.frameon": False,
    "font.size": 10,
    "image.cmap": "viridis",
}
ATTENTION_CMAP = "Blues"


def use_style() -> None:
    """Apply the book's matplotlib style (call once per chapter, after the seed)."""
    plt.rcParams.update(STYLE)


def heatmap(
    weights: torch.Tensor | np.ndarray,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    xlabel: str = "key",
    ylabel: str = "query",
    annotate: bool = False,
    vmax: float | None = 1.0,
) -> plt.Axes:
    """Draw a ``(n_q, n_k)`` attention matrix: rows are queries, columns keys, darker is more weight."""
    w = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"weights: expected a 2-D (n_q, n_k) matrix, got shape {w.shape}")
    for name, labels, n in (("x_labels", x_labels, w.shape[1]), ("y_labels", y_labels, w.shape[0])):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name}: expected {n} labels for weights of shape {w.shape}, got {len(labels)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.4 * w.shape[1] + 2.5, 0.35 * w.shape[0] + 1.5))
    image = ax.imshow(w, cmap=ATTENTION_CMAP, vmin=0.0, vmax=vmax, aspect="auto")
    ax.grid(False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if x_labels is not None:
        ax.set_xticks(range(w.shape[1]), x_labels, rotation=60, ha="right")
    if y_labels is not None:
        ax.set_yticks(range(w.shape[0]), y_labels)
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if w[i, j] > 0.6 * (vmax or w.max()) else "black")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def to_png(fig: plt.Figure, close: bool = True) -> bytes:
    """Render a figure to PNG bytes (for widget frames); closes it so it is not also shown inline."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    if close:
        plt.close(fig)
    return buffer.getvalue()


def draw_node_attention(
    graph: "networkx.Graph",
    positions: dict,
    node: int,
    neighbours: Sequence[int],
    alpha: torch.Tensor,
    classes: Sequence[int],
    ax: plt.Axes | None = None,
    class_names: Sequence[str] = ("instructor's faction", "administrator's"),
) -> plt.Axes:
    """Draw ``graph`` with one node's attention on its edges (chapter 7's karate club).

    ``neighbours`` are the nodes ``node`` attends (itself included) and ``alpha`` ``(len(neighbours),)`` their
    weights: an edge's width is proportional to its weight; node colours are ``classes`` (0 or 1).
    """
    import networkx as nx  # only chapter 7 draws graphs

    if alpha.shape != (len(neighbours),):
        raise ValueError(f"alpha: expected shape ({len(neighbours)},) (one weight per neighbour), "
                         f"got {tuple(alpha.shape)}")
    ax = ax or plt.subplots(figsize=(5.2, 4.2))[1]
    colours = ["tab:orange" if int(y) == 0 else "tab:purple" for y in classes]
    nx.draw_networkx_edges(graph, positions, ax=ax, edge_color="lightgrey", width=0.8)
    pairs = [(j, float(a)) for j, a in zip(neighbours, alpha) if j != node]
    top = float(alpha.max())
    nx.draw_networkx_edges(graph, positions, edgelist=[(node, j) for j, _ in pairs], ax=ax,
                           width=[4 * a / top for _, a in pairs], edge_color="tab:blue")
    nx.draw_networkx_nodes(graph, positions, ax=ax, node_color=colours, node_size=160)
    nx.draw_networkx_labels(graph, positions, ax=ax, font_size=7)
    ax.set_title(f"node {node}'s attention over its {len(pairs)} neighbours (width ∝ weight)")
    ax.set_xlabel(f"orange: {class_names[0]} · purple: {class_names[1]}")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax
