"""Chapter 3's probes: gradients against distance, layers to connect two positions, the two-relations task."""

import math

import pytest
import torch

from attnbook.errors import ShapeError
from attnbook.paths import (attention_layer, conv_layer, dilated_layer, gradient_by_distance, layers_to_connect,
                            sequence_layers)
from attnbook.two_relations import RelationReader, pair_accuracy, relation_batch, train_reader


def test_gradient_by_distance_on_layers_with_known_jacobians():
    g = torch.Generator().manual_seed(0)
    identity = gradient_by_distance(lambda x: x, 6, 3, g)  # only the last input matters, with Jacobian I
    torch.testing.assert_close(identity, torch.tensor([math.sqrt(3), 0, 0, 0, 0, 0], dtype=torch.float64))
    running = gradient_by_distance(lambda x: x.cumsum(1), 6, 3, g)  # every input enters the last sum once
    torch.testing.assert_close(running, torch.full((6,), math.sqrt(3), dtype=torch.float64))
    doubled = gradient_by_distance(lambda x: 2 * x.flip(1), 4, 2, g)  # last output reads the first input
    assert doubled[-1] == pytest.approx(2 * math.sqrt(2)) and (doubled[:-1] == 0).all()


def test_gradient_by_distance_errors_are_named():
    with pytest.raises(ShapeError, match=r"layer: expected an output of shape \(1, 5, 2\)"):
        gradient_by_distance(lambda x: x[:, :-1], 5, 2)
    with pytest.raises(ValueError, match="n, dim: expected n >= 2"):
        gradient_by_distance(lambda x: x, 1, 2)


def test_recurrent_gradients_decay_and_attention_does_not():
    torch.manual_seed(0)
    layers = sequence_layers(8, num_heads=2)
    norms = {name: gradient_by_distance(f, 30, 8, torch.Generator().manual_seed(1)) for name, f in layers.items()}
    assert norms["plain RNN (tanh)"][25] < 1e-4 * norms["plain RNN (tanh)"][0]
    attention = norms["self-attention"][1:]
    assert attention.min() > 0.05 * attention.max()


def test_layers_to_connect_matches_the_path_lengths():
    for n in (5, 16, 40):
        assert layers_to_connect(attention_layer, n) == 1
        assert layers_to_connect(conv_layer, n) == math.ceil((n - 1) / 2)
        assert layers_to_connect(dilated_layer, n) == math.ceil(math.log(n, 3))
    with pytest.raises(RuntimeError, match="did not connect"):
        layers_to_connect(conv_layer, 40, max_layers=3)


def test_relation_batch_labels_by_loop():
    tokens, labels = relation_batch(20, 7, generator=torch.Generator().manual_seed(3))
    for b in range(20):
        majority = int(sum(tokens[b].tolist()) * 2 > 7)
        assert labels[b, 0] == -100
        for i in range(1, 7):
            assert labels[b, i] == 2 * tokens[b, i - 1] + majority
    with pytest.raises(ValueError, match="odd length"):
        relation_batch(2, 6)


def test_relation_reader_shapes_errors_and_learning():
    torch.manual_seed(0)
    reader = RelationReader(n=7, embed_dim=8, num_heads=2)
    logits, weights = reader(torch.zeros(3, 7, dtype=torch.long))
    assert logits.shape == (3, 7, 4) and weights.shape == (3, 2, 7, 7)
    with pytest.raises(ValueError, match=r"tokens: expected length n=7"):
        reader(torch.zeros(3, 6, dtype=torch.long))
    with pytest.raises(ShapeError, match="tokens: expected 2 dimensions"):
        reader(torch.zeros(7, dtype=torch.long))
    before = pair_accuracy(reader, generator=torch.Generator().manual_seed(0))
    losses = train_reader(reader, steps=150, generator=torch.Generator().manual_seed(0))
    assert losses[-1] < losses[0]
    assert pair_accuracy(reader, generator=torch.Generator().manual_seed(0)) > before
