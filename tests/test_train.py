"""The one training loop: its hooks (vector losses of side-by-side models, custom clipping, on_epoch_end) and Patience."""

import pytest
import torch
from torch import nn

from attnbook.train import Patience, fit


def regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=g)
    return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1


def test_a_vector_loss_trains_each_entry_and_records_each():
    """Two copies of a model, side by side, as one loss vector: each entry is recorded, their sum is minimised."""
    x, y = regression()
    torch.manual_seed(0)
    models = nn.ModuleList([nn.Linear(3, 1), nn.Linear(3, 1)])
    optimizer = torch.optim.SGD(models.parameters(), lr=0.05)

    def loss(batch):
        return torch.stack([((m(batch[0]).squeeze(-1) - batch[1]) ** 2).mean() for m in models])

    history = fit(models, optimizer, lambda: [(x[:32], y[:32]), (x[32:], y[32:])], loss, epochs=30)
    assert all(len(epoch) == 2 for epoch in history)
    assert all(history[-1][i] < 0.1 * history[0][i] for i in range(2))


def test_on_epoch_end_sees_evaluation_mode_and_can_stop():
    x, y = regression()
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    seen = []

    def hook(epoch, loss):
        seen.append((epoch, model.training))
        return epoch == 3

    history = fit(model, optimizer, lambda: [(x, y)], lambda b: ((model(b[0]).squeeze(-1) - b[1]) ** 2).mean(), 50,
                  on_epoch_end=hook)
    assert len(history) == 4 and seen == [(e, False) for e in range(4)]


def test_custom_clipping_receives_the_parameters_and_the_norm():
    x, y = regression()
    model = nn.Linear(3, 1)
    calls = []

    def clip(params, max_norm):
        params = list(params)
        calls.append((len(params), max_norm))
        nn.utils.clip_grad_norm_(params, max_norm)

    fit(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda: [(x, y)],
        lambda b: ((model(b[0]).squeeze(-1) - b[1]) ** 2).mean(), 2, clip_norm=0.5, clip_grad=clip)
    assert calls == [(2, 0.5), (2, 0.5)]


@pytest.mark.parametrize(("patience", "improvements", "stops_at"), [
    (2, [True, False, True, False, False, False], 4),
    (1, [False], 0),
    (None, [False] * 10, None),
])
def test_patience_counts_epochs_without_improvement(patience, improvements, stops_at):
    counter = Patience(patience)
    stops = [counter.update(improved) for improved in improvements]
    assert (stops.index(True) if True in stops else None) == stops_at
