"""Graphs for chapter 7: the Planetoid citation graphs, Zachary's karate club, and a generated stand-in.

Every loader returns a `GraphData`: node features ``x`` (N, F), labels ``y`` (N,), an edge list ``edge_index``
(2, E) of source→target pairs with both directions of every undirected edge and no self-loops, and boolean
train / validation / test masks (N,).

* `load_planetoid` reads ``ind.{cora,citeseer}.*`` from ``$ATTNBOOK_DATA/planetoid/`` (Yang et al. 2016), checks
  each file's SHA-256, and unpickles them with `PlanetoidUnpickler`, which only lets through the six classes the
  files name. The split is the one the GCN and GAT papers report on: the first 20 labelled nodes of each class
  (140 for Cora) for training, the next 500 nodes for validation, the 1000 test-index nodes for testing.
* `karate_club` is networkx's copy of Zachary's club (34 members, two factions after the split).
* `generated_citation_graph` is the offline fallback: a stochastic block model whose edges mostly join nodes of
  the same class and whose sparse bag-of-words features carry a weak class signal, split like Planetoid.
"""

from __future__ import annotations

import io
import pickle
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from attnbook.data.files import DataFileError, describe_source, find_data

PLANETOID_SHA256 = {
    "cora": {
        "x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
        "y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
        "tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
        "ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
        "allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
        "ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
        "graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
        "test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
    },
    "citeseer": {
        "x": "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
        "y": "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
        "tx": "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
        "ty": "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
        "allx": "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
        "ally": "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
        "graph": "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
        "test.index": "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
    },
}


@dataclass
class GraphData:
    """A node-classification graph. Shapes: x (N, F), y (N,), edge_index (2, E), masks (N,).

    ``x`` is dense (`attnbook.gat.to_sparse_csr` turns it into the sparse matrix the models can exploit).
    ``source`` is the line that says which data ran.
    """

    name: str
    x: Tensor
    y: Tensor
    edge_index: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    num_classes: int
    source: str = ""
    node_names: list[str] = field(default_factory=list)

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]

    @property
    def num_features(self) -> int:
        return self.x.shape[1]

    def summary(self) -> str:
        """One line of counts: nodes, undirected edges, features, classes, split sizes."""
        sizes = "/".join(str(int(m.sum())) for m in (self.train_mask, self.val_mask, self.test_mask))
        return (f"{self.name}: {self.num_nodes} nodes, {self.edge_index.shape[1] // 2} undirected edges, "
                f"{self.num_features} features, {self.num_classes} classes, train/val/test {sizes}")


# ---------------------------------------------------------------------------------------------------------
# Planetoid files.


class PlanetoidUnpickler(pickle.Unpickler):
    """An unpickler that loads only the classes the Planetoid files reference, and refuses everything else.

    The files were pickled by Python 2 with scipy's old module layout, so two names are mapped to where the
    same classes live today.
    """

    ALLOWED = {
        ("collections", "defaultdict"): defaultdict,
        ("__builtin__", "list"): list,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("scipy.sparse.csr", "csr_matrix"): sp.csr_matrix,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: the Planetoid files only need "
                f"{sorted('.'.join(key) for key in self.ALLOWED)}"
            ) from None


def restricted_load(data: bytes) -> object:
    """Unpickle Planetoid bytes with `PlanetoidUnpickler` (Python 2 pickles: latin-1 strings)."""
    return PlanetoidUnpickler(io.BytesIO(data), encoding="latin1").load()


def load_planetoid(name: str = "cora") -> GraphData | None:
    """The Planetoid split of Cora or CiteSeer from ``$ATTNBOOK_DATA/planetoid/``, or None if absent.

    Follows Kipf's ``load_data``: test nodes are stored out of order and put back in place; CiteSeer's 15 test
    indices with no node are padded with empty rows (no features, no label, in no split). Features are
    returned raw (binary); apply `row_normalize` as the GCN and GAT papers do.
    """
    if name not in PLANETOID_SHA256:
        raise ValueError(f"name: expected one of {sorted(PLANETOID_SHA256)}, got {name!r}")
    paths = {part: find_data(f"planetoid/ind.{name}.{part}", digest) for part, digest in PLANETOID_SHA256[name].items()}
    if any(path is None for path in paths.values()):
        return None
    parts = {part: restricted_load(paths[part].read_bytes()) for part in ("x", "y", "tx", "ty", "allx", "ally", "graph")}
    test_index = np.array([int(line) for line in paths["test.index"].read_text().split()])
    test_sorted = np.sort(test_index)
    tx, ty = parts["tx"], parts["ty"]
    span = test_sorted[-1] - test_sorted[0] + 1
    if span != len(test_index):  # CiteSeer: test indices with no node get empty rows
        tx_full = sp.lil_matrix((span, tx.shape[1]))
        tx_full[test_sorted - test_sorted[0], :] = tx
        ty_full = np.zeros((span, ty.shape[1]))
        ty_full[test_sorted - test_sorted[0], :] = ty
        tx, ty = tx_full, ty_full
    features = sp.vstack((parts["allx"], tx)).tolil()
    features[test_index, :] = features[test_sorted, :]
    onehot = np.vstack((parts["ally"], ty))
    onehot[test_index, :] = onehot[test_sorted, :]
    num_nodes = features.shape[0]
    if set(parts["graph"]) - set(range(num_nodes)):
        raise DataFileError(f"ind.{name}.graph: node ids outside 0..{num_nodes - 1}")
    edges = [(u, v) for u, targets in parts["graph"].items() for v in targets]
    n_train, n_labelled = parts["y"].shape[0], parts["ally"].shape[0]
    masks = [np.zeros(num_nodes, dtype=bool) for _ in range(3)]
    masks[0][:n_train] = True
    masks[1][n_train:n_train + 500] = True
    masks[2][test_sorted] = True
    if n_train + 500 > n_labelled:
        raise DataFileError(f"ind.{name}.ally: expected at least {n_train + 500} labelled nodes, got {n_labelled}")
    return GraphData(
        name=f"Planetoid {name.capitalize() if name == 'cora' else 'CiteSeer'}",
        x=torch.tensor(features.toarray(), dtype=torch.float32),
        y=torch.tensor(onehot.argmax(1), dtype=torch.long),
        edge_index=undirected_edge_index(edges, num_nodes),
        train_mask=torch.from_numpy(masks[0]),
        val_mask=torch.from_numpy(masks[1]),
        test_mask=torch.from_numpy(masks[2]),
        num_classes=onehot.shape[1],
        source=describe_source(f"Planetoid {name}", paths["x"].parent / f"ind.{name}.*", "unused"),
    )


# ---------------------------------------------------------------------------------------------------------
# Shared helpers.


def undirected_edge_index(edges: list[tuple[int, int]] | np.ndarray, num_nodes: int) -> Tensor:
    """(2, E) LongTensor holding both directions of every edge once, without self-loops, sorted by target."""
    pairs = np.asarray(list(edges), dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= num_nodes):
        raise ValueError(f"edges: expected node ids in 0..{num_nodes - 1}, got {pairs.min()}..{pairs.max()}")
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = both[both[:, 0] != both[:, 1]]
    keys = np.unique(both[:, 1] * num_nodes + both[:, 0])  # sorted by target, then source
    return torch.from_numpy(np.stack([keys % num_nodes, keys // num_nodes]))


def row_normalize(x: Tensor) -> Tensor:
    """Divide each row by its sum (rows that sum to zero stay zero), as the GCN and GAT papers preprocess."""
    total = x.sum(dim=1, keepdim=True)
    return x / torch.where(total == 0, torch.ones_like(total), total)


def planetoid_split(y: np.ndarray, num_classes: int, per_class: int = 20, num_val: int = 500,
                    num_test: int = 1000, rng: np.random.Generator | None = None) -> tuple[np.ndarray, ...]:
    """Boolean train/val/test masks like Planetoid's: ``per_class`` nodes of each class, then val and test."""
    rng = np.random.default_rng(0) if rng is None else rng
    order = rng.permutation(len(y))
    train = np.zeros(len(y), dtype=bool)
    for c in range(num_classes):
        train[order[y[order] == c][:per_class]] = True
    rest = order[~train[order]]
    if len(rest) < num_val + num_test:
        raise ValueError(f"y: {len(y)} nodes are too few for {num_val} validation and {num_test} test nodes")
    val, test = np.zeros_like(train), np.zeros_like(train)
    val[rest[:num_val]] = True
    test[rest[num_val:num_val + num_test]] = True
    return train, val, test


# ---------------------------------------------------------------------------------------------------------
# Embedded and generated graphs.


def karate_club() -> GraphData:
    """Zachary's karate club from networkx: 34 members, 78 friendships, label = the faction joined (2 classes).

    Features are one-hot node ids (the graph carries all the information). Train on the two leaders (nodes 0
    and 33) and two more members of each faction, validate on two members of each, test on the other 24.
    """
    import networkx as nx

    graph = nx.karate_club_graph()
    n = graph.number_of_nodes()
    y = torch.tensor([0 if graph.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(n)])
    train = torch.zeros(n, dtype=torch.bool)
    train[[0, 1, 2, 33, 32, 31]] = True
    val = torch.zeros(n, dtype=torch.bool)
    val[[3, 13, 23, 29]] = True
    return GraphData(
        name="karate club", x=torch.eye(n), y=y, edge_index=undirected_edge_index(list(graph.edges()), n),
        train_mask=train, val_mask=val, test_mask=~(train | val), num_classes=2,
        source="data: Zachary's karate club (embedded in networkx)", node_names=[str(i) for i in range(n)],
    )


def generated_citation_graph(
    num_nodes: int = 2708,
    num_classes: int = 7,
    num_features: int = 1433,
    words_per_node: int = 18,
    topic_share: float = 0.2,
    mean_degree: float = 3.9,
    homophily: float = 0.81,
    seed: int = 0,
    num_val: int = 500,
    num_test: int = 1000,
) -> GraphData:
    """A Cora-sized stand-in: a stochastic block model with bag-of-words features (binary, like Cora's).

    Each node draws ``words_per_node`` words: a fraction ``topic_share`` from its class's own block of the
    vocabulary, the rest uniformly from all of it, so a node's words alone say little about its class. Edges
    join nodes of the same class with probability ``homophily`` (Cora's edge homophily is 0.81), so averaging
    over neighbours recovers the class. Split like Planetoid: 20 per class / ``num_val`` / ``num_test``.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, size=num_nodes)
    block = num_features // num_classes
    rows, cols = [], []
    for i in range(num_nodes):
        n_topic = rng.binomial(words_per_node, topic_share)
        words = np.concatenate([y[i] * block + rng.integers(0, block, n_topic),
                                rng.integers(0, num_features, words_per_node - n_topic)])
        words = np.unique(words)
        rows.extend([i] * len(words))
        cols.extend(words.tolist())
    x = np.zeros((num_nodes, num_features), dtype=np.float32)
    x[rows, cols] = 1.0
    num_edges = int(num_nodes * mean_degree / 2)
    by_class = [np.flatnonzero(y == c) for c in range(num_classes)]
    sources = rng.integers(0, num_nodes, num_edges)
    same = rng.random(num_edges) < homophily
    targets = np.where(same, [rng.choice(by_class[y[s]]) for s in sources], rng.integers(0, num_nodes, num_edges))
    train, val, test = planetoid_split(y, num_classes, num_val=num_val, num_test=num_test, rng=rng)
    return GraphData(
        name="generated citation graph", x=torch.from_numpy(x), y=torch.from_numpy(y),
        edge_index=undirected_edge_index(np.stack([sources, targets], 1), num_nodes),
        train_mask=torch.from_numpy(train), val_mask=torch.from_numpy(val), test_mask=torch.from_numpy(test),
        num_classes=num_classes,
        source=describe_source("Planetoid cora", None, "a generated Cora-sized citation graph (stochastic block model)"),
    )


def citation_graph(name: str = "cora") -> GraphData:
    """The real Planetoid graph when ``$ATTNBOOK_DATA`` has it, else `generated_citation_graph`; features
    row-normalised either way, and ``source`` says which ran."""
    data = load_planetoid(name)
    if data is None:
        data = generated_citation_graph()
    data.x = row_normalize(data.x)
    return data
