"""The few-labels experiment's parts: the small CNN, training, accuracy and the label curve."""

import pytest
import torch

from attnbook.errors import ShapeError
from attnbook.few_labels import SmallCNN, accuracy, epochs_for, label_curve, logits_of, train_classifier
from attnbook.vit import ViT


def toy_images(n=60, seed=0):
    """Two classes anyone can tell apart: bright top half or bright bottom half, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = 0.3 * torch.rand(n, 1, 8, 8, generator=generator)
    images[labels == 0, :, :4] += 1.0
    images[labels == 1, :, 4:] += 1.0
    return images, labels


def test_small_cnn_shapes_and_size():
    model = SmallCNN(8, 1, 10, width=28)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == (28 * 9 + 28) + (56 * 28 * 9 + 56) + (56 * 4 * 10 + 10)
    assert SmallCNN(12, 3, 4)(torch.rand(2, 3, 12, 12)).shape == (2, 4)
    with pytest.raises(ValueError, match="multiple of 4"):
        SmallCNN(10, 1, 10)


@pytest.mark.parametrize("make", [lambda: SmallCNN(8, 1, 2), lambda: ViT(8, 2, 1, 2, 16, 1, 2, 32)],
                         ids=["cnn", "vit"])
def test_training_learns_a_separable_task(make):
    torch.manual_seed(0)
    images, labels = toy_images()
    model = make()
    before = accuracy(model, images, labels)
    losses = train_classifier(model, images, labels, epochs=15, batch_size=16,
                              generator=torch.Generator().manual_seed(0))
    assert len(losses) == 15 and losses[-1] < losses[0] / 4
    test_images, test_labels = toy_images(seed=1)
    assert accuracy(model, test_images, test_labels) == 1.0 and before < 1.0
    assert not model.training  # left in eval mode


def test_accuracy_and_logits_of():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 1.0, 0.0]))  # always predicts class 1
    images = torch.rand(4, 1, 8, 8)
    assert accuracy(model, images, torch.tensor([1, 1, 0, 2])) == 0.5
    vit = ViT(8, 2, 1, 3, 8, 1, 2, 16)
    torch.testing.assert_close(logits_of(vit, images), vit(images).logits)
    with pytest.raises(ShapeError, match="labels"):
        accuracy(model, images, torch.tensor([1, 1]))
    with pytest.raises(ShapeError, match="images"):
        accuracy(model, images.flatten(1), torch.tensor([1, 1, 0, 2]))


def test_epochs_for_gives_at_least_the_steps():
    assert epochs_for(50, 150, 32) == 75  # 2 batches per epoch
    assert epochs_for(1257, 400, 32) == 10  # 40 batches per epoch
    assert epochs_for(1257, 401, 32) == 11
    assert epochs_for(10, 7, 32) == 7  # a batch of everything


def test_label_curve_shapes_subsets_and_seeds():
    images, labels = toy_images(80)
    train, test = (images, labels), toy_images(20, seed=3)
    keep = []
    result = label_curve(lambda: SmallCNN(8, 1, 2), train, test, counts=(2, 40), steps=(3, 3), seeds=(0, 1),
                         keep=keep, batch_size=8)
    assert result["test"].shape == result["train"].shape == (2, 2) and len(keep) == 4
    assert ((result["test"] >= 0) & (result["test"] <= 1)).all()
    again = label_curve(lambda: SmallCNN(8, 1, 2), train, test, counts=(2, 40), steps=(3, 3), seeds=(0, 1),
                        batch_size=8)
    torch.testing.assert_close(again["test"], result["test"])  # the seed fixes the subset, weights and order
    with pytest.raises(ValueError, match="steps"):
        label_curve(lambda: SmallCNN(8, 1, 2), train, test, counts=(2, 40), steps=(3,))
