"""scikit-learn's digits as chapter 6 uses them: the fixed stratified split, the per-class subsets, the canvas;
and the re-export of the detection scenes."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

from attnbook.data.images import load_digits, per_class, place_on_canvas
from attnbook.errors import DTypeError, ShapeError


def test_split_is_fixed_stratified_and_complete():
    digits = load_digits()
    assert digits.train_images.shape == (1257, 1, 8, 8) and digits.test_images.shape == (540, 1, 8, 8)
    assert digits.train_images.dtype == torch.float32 and digits.train_labels.dtype == torch.long
    for images in (digits.train_images, digits.test_images):
        assert images.min() == 0.0 and images.max() == 1.0
    train_share = digits.train_labels.bincount() / 1257
    test_share = digits.test_labels.bincount() / 540
    assert (train_share - test_share).abs().max() < 0.005  # the class proportions are kept in both halves
    again = load_digits()
    assert torch.equal(again.train_images, digits.train_images) and torch.equal(again.test_labels, digits.test_labels)
    other = load_digits(seed=1)
    assert not torch.equal(other.train_labels, digits.train_labels)


def test_images_are_sklearns_scaled_and_none_is_lost_or_repeated():
    digits = load_digits()
    raw = sklearn_digits()
    rows = {tuple(x): y for x, y in zip(raw.data.astype(np.float32) / 16.0, raw.target)}
    ours = torch.cat([digits.train_images, digits.test_images]).flatten(1).numpy()
    labels = torch.cat([digits.train_labels, digits.test_labels]).numpy()
    assert all(rows[tuple(x)] == y for x, y in zip(ours, labels))
    expected = np.sort(raw.data.astype(np.float32) / 16.0, axis=0)
    np.testing.assert_array_equal(np.sort(ours, axis=0), expected)


def test_per_class_draws_count_of_each_class():
    labels = load_digits().train_labels
    picked = per_class(labels, 5, torch.Generator().manual_seed(0))
    assert picked.shape == (50,) and len(picked.unique()) == 50
    assert torch.equal(labels[picked].bincount(), torch.full((10,), 5))
    same = per_class(labels, 5, torch.Generator().manual_seed(0))
    assert torch.equal(picked, same)
    assert not torch.equal(picked, per_class(labels, 5, torch.Generator().manual_seed(1)))
    everything = per_class(labels, 10_000)
    assert torch.equal(everything, torch.arange(len(labels)))  # a class with fewer gives all it has


def test_errors():
    with pytest.raises(ValueError, match="test_size"):
        load_digits(test_size=1.5)
    with pytest.raises(ValueError, match="count"):
        per_class(torch.tensor([0, 1]), 0)
    with pytest.raises(DTypeError, match="integer"):
        per_class(torch.tensor([0.0, 1.0]), 1)
    with pytest.raises(ShapeError, match="labels"):
        per_class(torch.zeros(2, 2, dtype=torch.long), 1)


def test_place_on_canvas_moves_each_digit_whole():
    images = torch.rand(200, 2, 3, 4) + 0.1  # no zero pixel, so each digit's box can be found
    canvas = place_on_canvas(images, 7, torch.Generator().manual_seed(0))
    assert canvas.shape == (200, 2, 7, 7)
    offsets = set()
    for image, placed in zip(images, canvas):
        rows, cols = placed[0].nonzero().unbind(1)
        top, left = int(rows.min()), int(cols.min())
        offsets.add((top, left))
        torch.testing.assert_close(placed[:, top : top + 3, left : left + 4], image)
        torch.testing.assert_close(placed.sum(), image.sum())  # nothing else on the canvas
    assert offsets == {(r, c) for r in range(5) for c in range(4)}  # every offset occurs
    with pytest.raises(ValueError, match="size"):
        place_on_canvas(images, 3)


def test_scenes_are_re_exported_from_their_module():
    from attnbook.data import images, scenes

    assert images.make_scenes is scenes.make_scenes and images.Scenes is scenes.Scenes
    assert images.CLASS_NAMES == scenes.CLASS_NAMES
    drawn = images.make_scenes(2, seed=0)
    assert isinstance(drawn, images.Scenes) and len(drawn) == 2
