"""Shared helpers: seeding, the training loop, plotting, data files and shape checks."""

import hashlib
import random

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from attnbook.data.files import DataFileError, describe_source, find_data
from attnbook.errors import ShapeError, check_shape
from attnbook.plot import heatmap, to_png
from attnbook.repro import set_seed
from attnbook.train import fit, progress


def test_set_seed_makes_every_generator_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(2)

    generator = set_seed(3)
    first, later = draw(), draw()
    set_seed(3)
    again = draw()
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])
    assert first[0] != later[0] and not torch.equal(first[2], later[2])
    assert generator.initial_seed() == 3


def test_fit_reduces_the_loss_and_reports_each_epoch():
    set_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = lambda: [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    history = fit(model, optimizer, batches, lambda b: ((model(b[0]).squeeze(-1) - b[1]) ** 2).mean(), epochs=20,
                  clip_norm=10.0)
    assert len(history) == 20 and history[-1] < 0.01 * history[0]
    assert not model.training
    with pytest.raises(ValueError, match="no batch"):
        fit(model, optimizer, lambda: [], lambda b: b, epochs=1)


def test_progress_is_silent_when_disabled(monkeypatch, capsys):
    monkeypatch.setenv("ATTNBOOK_PROGRESS", "0")
    assert list(progress(range(3), desc="x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_heatmap_and_png():
    ax = heatmap(torch.tensor([[0.2, 0.8], [0.5, 0.5]]), x_labels=["a", "b"], y_labels=["c", "d"], annotate=True)
    png = to_png(ax.figure)
    assert png.startswith(b"\x89PNG")
    with pytest.raises(ValueError, match=r"weights: expected a 2-D"):
        heatmap(torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match=r"x_labels: expected 2 labels"):
        heatmap(torch.zeros(2, 2), x_labels=["a"])
    plt.close("all")


def test_find_data_verifies_checksums(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTNBOOK_DATA", raising=False)
    assert find_data("x.txt") is None
    assert "generated offline" in describe_source("set", None, "toy")
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    (tmp_path / "x.txt").write_bytes(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    assert find_data("x.txt", digest) == tmp_path / "x.txt"
    assert find_data("missing.txt", digest) is None
    assert "(real)" in describe_source("set", tmp_path / "x.txt", "toy")
    (tmp_path / "x.txt").write_bytes(b"hellO")
    with pytest.raises(DataFileError, match=r"x.txt: SHA-256 is .* expected .*unset ATTNBOOK_DATA"):
        find_data("x.txt", digest)


def test_check_shape():
    check_shape("t", torch.zeros(2, 3), (2, None))
    with pytest.raises(ShapeError, match=r"t: expected shape \(2, \*\), got \(2, 3, 1\)"):
        check_shape("t", torch.zeros(2, 3, 1), (2, None))


def test_show_source_renders_the_package_code():
    from attnbook.core import attention
    from attnbook.source import show_source

    shown = show_source(attention)._repr_markdown_()
    assert shown.startswith("`attnbook.core.attend.attention`")
    assert "def attention(" in shown and "normalize_fn(scores, mask)" in shown
    with pytest.raises(TypeError, match="obj: expected a function"):
        show_source(3)
