"""Graph loaders: the Planetoid split (when the real files are present), the restricted unpickler, the fallbacks."""

import io
import pickle
import shutil
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from attnbook.data.files import DataFileError, data_root
from attnbook.data.graphs import (
    PlanetoidUnpickler,
    citation_graph,
    generated_citation_graph,
    karate_club,
    load_planetoid,
    restricted_load,
    row_normalize,
    undirected_edge_index,
)

has_planetoid = pytest.mark.skipif(
    data_root() is None or not (data_root() / "planetoid" / "ind.cora.x").is_file(),
    reason="needs ATTNBOOK_DATA with planetoid/ (see the data README)",
)


def check_graph(data):
    n = data.num_nodes
    assert data.x.shape[0] == data.y.shape[0] == n
    assert data.edge_index.dtype == torch.long and data.edge_index.shape[0] == 2
    src, dst = data.edge_index
    assert not (src == dst).any(), "no self-loops"
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert len(pairs) == data.edge_index.shape[1], "no repeated edges"
    assert all((t, s) in pairs for s, t in pairs), "both directions of every edge"
    assert not (data.train_mask & data.val_mask).any() and not (data.val_mask & data.test_mask).any()
    assert not (data.train_mask & data.test_mask).any()
    assert int(data.y.max()) < data.num_classes


# ------------------------------------------------------------------------------------ real data


@has_planetoid
def test_cora_planetoid_split():
    data = load_planetoid("cora")
    check_graph(data)
    assert (data.num_nodes, data.num_features, data.num_classes) == (2708, 1433, 7)
    assert data.edge_index.shape[1] == 10556
    assert [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)] == [140, 500, 1000]
    assert torch.bincount(data.y[data.train_mask]).tolist() == [20] * 7  # 20 labelled nodes per class
    assert data.train_mask[:140].all() and data.val_mask[140:640].all()
    assert data.test_mask[1708:].all()
    assert set(data.x.unique().tolist()) == {0.0, 1.0}  # raw binary bag of words
    assert "real" in data.source


@has_planetoid
def test_citeseer_pads_missing_test_nodes():
    data = load_planetoid("citeseer")
    check_graph(data)
    assert (data.num_nodes, data.num_features, data.num_classes) == (3327, 3703, 6)
    assert data.edge_index.shape[1] == 2 * 4552
    assert [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)] == [120, 500, 1000]
    assert (data.x.sum(1) == 0).sum() >= 15  # the padded rows are empty


@has_planetoid
def test_corrupt_file_is_reported(tmp_path, monkeypatch):
    shutil.copytree(data_root() / "planetoid", tmp_path / "planetoid")
    target = tmp_path / "planetoid" / "ind.cora.y"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:-1] + b"\x00")
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    with pytest.raises(DataFileError, match="ind.cora.y: SHA-256 is"):
        load_planetoid("cora")


def test_missing_data_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    assert load_planetoid("cora") is None
    data = citation_graph("cora")
    assert data.name == "generated citation graph" and "generated offline" in data.source
    torch.testing.assert_close(data.x.sum(1)[data.x.sum(1) > 0], torch.ones(int((data.x.sum(1) > 0).sum())))


def test_unknown_planetoid_name():
    with pytest.raises(ValueError, match="name: expected one of"):
        load_planetoid("pubmed")


# ------------------------------------------------------------------------------------ restricted unpickling


def test_unpickler_loads_a_python2_style_graph_pickle():
    graph = defaultdict(list, {0: [1, 2], 1: [0]})
    data = pickle.dumps(graph, protocol=2, fix_imports=True)  # names builtins as Python 2's __builtin__
    assert b"__builtin__" in data
    assert restricted_load(data) == graph


@has_planetoid
def test_unpickler_loads_the_real_files():
    for part, kind in (("x", sp.csr_matrix), ("y", np.ndarray), ("graph", defaultdict)):
        path = data_root() / "planetoid" / f"ind.cora.{part}"
        assert isinstance(restricted_load(path.read_bytes()), kind)


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("payload", [_Exploit(), io.BytesIO, {1, 2}])
def test_unpickler_refuses_anything_else(payload):
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        PlanetoidUnpickler(io.BytesIO(pickle.dumps(payload, protocol=2))).load()


# ------------------------------------------------------------------------------------ embedded and generated


def test_karate_club():
    data = karate_club()
    check_graph(data)
    assert data.num_nodes == 34 and data.edge_index.shape[1] == 2 * 78
    assert data.y[0] == 0 and data.y[33] == 1  # the two leaders lead different factions
    assert [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)] == [6, 4, 24]


def test_generated_graph_is_cora_like_and_deterministic():
    data = generated_citation_graph()
    check_graph(data)
    assert (data.num_nodes, data.num_features, data.num_classes) == (2708, 1433, 7)
    assert [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)] == [140, 500, 1000]
    assert torch.bincount(data.y[data.train_mask]).tolist() == [20] * 7
    src, dst = data.edge_index
    homophily = (data.y[src] == data.y[dst]).float().mean().item()
    assert 0.75 < homophily < 0.9  # Cora's is 0.81
    assert (data.x != 0).float().mean() < 0.02  # sparse, like Cora's bag of words
    again = generated_citation_graph()
    assert torch.equal(again.x, data.x) and torch.equal(again.edge_index, data.edge_index)
    assert not torch.equal(generated_citation_graph(seed=1).edge_index, data.edge_index)


def test_undirected_edge_index_and_row_normalize():
    edges = undirected_edge_index([(0, 1), (1, 0), (2, 2), (1, 2)], num_nodes=4)
    assert edges.tolist() == [[1, 0, 2, 1], [0, 1, 1, 2]]  # sorted by target; loop and duplicate gone
    with pytest.raises(ValueError, match=r"edges: expected node ids in 0..3"):
        undirected_edge_index([(0, 4)], num_nodes=4)
    x = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    torch.testing.assert_close(row_normalize(x), torch.tensor([[0.25, 0.75], [0.0, 0.0]]))


def test_summary_counts_undirected_edges():
    assert karate_club().summary().startswith("karate club: 34 nodes, 78 undirected edges, 34 features")
