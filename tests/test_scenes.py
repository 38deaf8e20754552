"""Generated detection scenes: format, boxes that fit the pixels, determinism, clutter that keeps the objects."""

import pytest
import torch

from attnbook.data.scenes import CLASS_NAMES, Scenes, make_scenes


def box_of(mask):
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1


@pytest.mark.parametrize("image_size", [32, 48])
def test_format_and_ranges(image_size):
    scenes = make_scenes(40, image_size=image_size, seed=3)
    assert isinstance(scenes, Scenes) and len(scenes) == 40
    assert scenes.images.shape == (40, 3, image_size, image_size) and scenes.images.dtype == torch.float32
    assert scenes.masks.shape == (40, image_size, image_size) and scenes.masks.dtype == torch.bool
    assert 0.0 <= scenes.images.min() and scenes.images.max() <= 1.0
    for target in scenes.targets:
        labels, boxes = target["class_labels"], target["boxes"]
        assert labels.dtype == torch.long and boxes.dtype == torch.float32
        assert 1 <= len(labels) <= 3 and boxes.shape == (len(labels), 4)
        assert ((0 <= labels) & (labels < len(CLASS_NAMES))).all()
        cx, cy, w, h = boxes.unbind(-1)
        assert (w > 0).all() and (h > 0).all()
        assert (cx - w / 2 >= 0).all() and (cx + w / 2 <= 1 + 1e-6).all()
        assert (cy - h / 2 >= 0).all() and (cy + h / 2 <= 1 + 1e-6).all()


def test_boxes_are_the_extent_of_the_object_pixels():
    size = 32
    scenes = make_scenes(30, image_size=size, seed=1)
    for i, target in enumerate(scenes.targets):
        covered = torch.zeros(size, size, dtype=torch.bool)
        for label, box in zip(target["class_labels"], target["boxes"] * size):
            cx, cy, w, h = box.tolist()
            x0, y0, x1, y1 = round(cx - w / 2), round(cy - h / 2), round(cx + w / 2), round(cy + h / 2)
            inside = scenes.masks[i, y0:y1, x0:x1]
            assert box_of(inside) == (0, 0, x1 - x0, y1 - y0), "the box is tight around the shape"
            filled = inside.float().mean().item()
            if CLASS_NAMES[label] == "rectangle":
                assert filled == 1.0
            else:  # a disc fills about π/4 of its box
                assert 0.6 < filled < 0.9 and w == h
            covered[y0:y1, x0:x1] = True
        assert torch.equal(covered & scenes.masks[i], scenes.masks[i]), "no object pixel outside the boxes"


def test_objects_do_not_overlap_and_have_their_colour():
    scenes = make_scenes(30, seed=2)
    for i, target in enumerate(scenes.targets):
        boxes = target["boxes"] * 32
        x0y0, x1y1 = boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                gap = torch.maximum(x0y0[a] - x1y1[b], x0y0[b] - x1y1[a])
                assert gap.max() >= 1, "boxes are at least one pixel apart"
        background = scenes.images[i][:, ~scenes.masks[i]]
        assert (background.std(dim=1) < 1e-6).all(), "the plain background is one colour"


def test_deterministic_in_the_seed():
    a, b, c = make_scenes(10, seed=5), make_scenes(10, seed=5), make_scenes(10, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a.targets, b.targets))
    assert not torch.equal(a.images, c.images)


def test_clutter_keeps_the_same_objects():
    plain, cluttered = make_scenes(12, clutter=False, seed=4), make_scenes(12, clutter=True, seed=4)
    assert torch.equal(plain.masks, cluttered.masks)
    for x, y in zip(plain.targets, cluttered.targets):
        assert torch.equal(x["boxes"], y["boxes"]) and torch.equal(x["class_labels"], y["class_labels"])
    objects = plain.masks[:, None].expand_as(plain.images)
    assert torch.equal(plain.images[objects], cluttered.images[objects]), "object pixels are unchanged"
    background = ~cluttered.masks[0]
    assert cluttered.images[0][:, background].std(dim=1).min() > 0.03, "the background is textured"


def test_object_counts_and_empty_scenes():
    counts = [len(t["class_labels"]) for t in make_scenes(200, min_objects=2, max_objects=4, seed=0).targets]
    assert set(counts) == {2, 3, 4}
    empty = make_scenes(3, min_objects=0, max_objects=0)
    assert all(t["boxes"].shape == (0, 4) for t in empty.targets) and not empty.masks.any()


def test_indexing_keeps_the_batch_dimension():
    scenes = make_scenes(5)
    one, some = scenes[2], scenes[1:4]
    assert one.images.shape == (1, 3, 32, 32) and len(one.targets) == 1 and one.masks.shape == (1, 32, 32)
    assert torch.equal(one.images[0], scenes.images[2]) and len(some) == 3
    assert torch.equal(scenes[-1].images[0], scenes.images[4])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n: expected at least one scene"),
        ({"n": 2, "image_size": 4}, "image_size: expected at least 8"),
        ({"n": 2, "min_objects": 3, "max_objects": 1}, "min_objects, max_objects"),
        ({"n": 1, "image_size": 8, "min_objects": 5, "max_objects": 5}, "could not place 5"),
    ],
)
def test_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_scenes(**kwargs)
