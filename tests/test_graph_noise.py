"""Chapter 7's homophily sweep and its drawing helper."""

import matplotlib

matplotlib.use("Agg")

import networkx as nx  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnbook.gat import NodeClassifierRecipe  # noqa: E402
from attnbook.gcn import MLP  # noqa: E402
from attnbook.graph_noise import homophily_sweep, inter_class_share  # noqa: E402
from attnbook.plot import draw_node_attention  # noqa: E402


def test_inter_class_share_counts_edges_between_labels():
    edges = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 0]])
    y = torch.tensor([0, 0, 1, 1])
    assert inter_class_share(edges, y) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="edge_index"):
        inter_class_share(edges.T, y)


def test_homophily_sweep_reports_the_share_it_asked_for():
    results = homophily_sweep([1.0, 0.0], [0], {"MLP": (MLP, NodeClassifierRecipe(0.01, 5e-4, max_epochs=2))},
                              num_nodes=480, num_features=60)
    clean, noisy = results
    assert clean.inter_class == 0.0  # every edge inside its class
    assert noisy.inter_class > 0.7  # random targets: about 6 in 7 edges leave the class
    assert len(clean.accuracy["MLP"]) == 1 and 0 <= clean.accuracy["MLP"][0] <= 1


def test_draw_node_attention_checks_one_weight_per_neighbour():
    graph = nx.path_graph(4)
    positions = nx.spring_layout(graph, seed=0)
    ax = draw_node_attention(graph, positions, 1, [1, 0, 2], torch.tensor([0.5, 0.3, 0.2]), [0, 0, 1, 1])
    assert "node 1" in ax.get_title() and "2 neighbours" in ax.get_title()
    with pytest.raises(ValueError, match="alpha"):
        draw_node_attention(graph, positions, 1, [1, 0, 2], torch.tensor([0.5, 0.5]), [0, 0, 1, 1])
