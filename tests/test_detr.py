"""DETR against HuggingFace's DetrForObjectDetection, HungarianMatcher and ImageLoss; boxes by hand; AP by COCOeval."""

import contextlib
import io
import itertools

import pytest
import torch
from torch.testing import assert_close

from attnbook.data.scenes import make_scenes
from attnbook.detr import (
    DETR,
    DetrDecoderLayer,
    DetrEncoderLayer,
    average_precision,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    coco_average_precision,
    generalized_box_iou,
    hungarian_match,
    matching_cost,
    postprocess,
    set_prediction_loss,
    sine_position_embedding,
)
from attnbook.detr.train import detr_loss, evaluate, small_detr, train_detr
from attnbook.errors import ShapeError
from attnbook.transformer import EncoderLayer

transformers = pytest.importorskip("transformers")
from transformers.loss.loss_for_object_detection import HungarianMatcher, ImageLoss
from transformers.loss.loss_for_object_detection import generalized_box_iou as hf_giou


def reference_detr(d_model=32, heads=4, encoder_layers=2, decoder_layers=2, ffn=48, queries=5, labels=3, seed=0):
    """A randomly initialised HF DETR with a tiny ResNet backbone, every weight perturbed so nothing is trivial."""
    config = transformers.DetrConfig(
        backbone_config=transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 24], depths=[1, 1],
                                                  layer_type="basic", out_features=["stage2"]),
        use_timm_backbone=False, use_pretrained_backbone=False, d_model=d_model, encoder_layers=encoder_layers,
        decoder_layers=decoder_layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, num_queries=queries, num_labels=labels,
        attn_implementation="eager")
    torch.manual_seed(seed)
    model = transformers.DetrForObjectDetection(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "backbone" not in name:
                parameter.add_(0.2 * torch.randn_like(parameter))
    return model


def reference_features(model, images):
    mask = torch.ones(images.shape[0], *images.shape[2:], dtype=torch.long)
    return model.model.backbone(images, mask)[-1][0]


@pytest.mark.parametrize(
    "sizes, image",
    [
        ({}, (2, 3, 64, 48)),
        ({"d_model": 16, "heads": 2, "encoder_layers": 1, "decoder_layers": 3, "queries": 7, "labels": 1},
         (3, 3, 40, 72)),
        ({"d_model": 24, "heads": 3, "ffn": 20, "queries": 4, "labels": 5, "seed": 3}, (1, 3, 32, 32)),
    ],
)
def test_from_reference_reproduces_logits_boxes_and_attention(sizes, image):
    reference = reference_detr(**sizes)
    ours = DETR.from_reference(reference).eval()
    images = torch.randn(*image, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(pixel_values=images, output_attentions=True)
        actual = ours.predict_from_features(reference_features(reference, images), need_weights=True)
    assert expected.logits.std() > 0.1, "the comparison is not between near-constant outputs"
    assert_close(actual["pred_logits"], expected.logits, atol=1e-5, rtol=1e-5)
    assert_close(actual["pred_boxes"], expected.pred_boxes, atol=1e-5, rtol=1e-5)
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        assert len(actual[name]) == len(getattr(expected, name))
        for ours_w, theirs_w in zip(actual[name], getattr(expected, name)):
            assert_close(ours_w, theirs_w, atol=1e-5, rtol=1e-5)
    assert ours.backbone is None and ours.num_queries == reference.config.num_queries
    with pytest.raises(RuntimeError, match="no backbone"):
        ours(images)


def test_sine_positions_match_reference():
    from transformers.models.detr.modeling_detr import DetrSinePositionEmbedding

    for height, width, d_model in ((5, 7, 32), (1, 3, 8), (8, 8, 64)):
        reference = DetrSinePositionEmbedding(d_model // 2, normalize=True)
        expected = reference(torch.Size([1, d_model, height, width]), "cpu", torch.float32)
        expected = expected.flatten(2).transpose(1, 2)[0]
        assert_close(sine_position_embedding(height, width, d_model), expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="d_model: expected a multiple of 4"):
        sine_position_embedding(3, 3, 10)
    with pytest.raises(ValueError, match="height, width"):
        sine_position_embedding(0, 3, 8)


def test_encoder_layer_without_positions_is_the_chapter_3_layer():
    torch.manual_seed(0)
    ours = DetrEncoderLayer(12, 3, 20, dropout=0.0).eval()
    plain = EncoderLayer(12, 3, 20, dropout=0.0).eval()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 12)
    assert_close(ours(x, torch.zeros(5, 12)), plain(x))
    assert not torch.allclose(ours(x, torch.randn(5, 12)), plain(x)), "positions change queries and keys"
    with pytest.raises(ShapeError, match="pos: expected shape"):
        ours(x, torch.zeros(4, 12))


def test_decoder_is_permutation_equivariant_in_its_queries():
    torch.manual_seed(0)
    layer = DetrDecoderLayer(12, 3, 20, dropout=0.0).eval()
    x, queries = torch.randn(2, 6, 12), torch.randn(6, 12)
    memory, memory_pos = torch.randn(2, 9, 12), torch.randn(9, 12)
    order = torch.randperm(6)
    out, _, cross = layer(x, memory, queries, memory_pos, need_weights=True)
    assert cross.shape == (2, 3, 6, 9)
    assert_close(layer(x[:, order], memory, queries[order], memory_pos), out[:, order], atol=1e-6, rtol=1e-5)
    with pytest.raises(ShapeError, match="memory_pos"):
        layer(x, memory, queries, torch.randn(8, 12))


def test_model_shapes_boxes_in_unit_square_and_auxiliary_outputs():
    model = small_detr(num_classes=2, num_queries=5).eval()
    images = make_scenes(3).images
    out = model(images, need_weights=True, auxiliary=True)
    assert out["pred_logits"].shape == (3, 5, 3) and out["pred_boxes"].shape == (3, 5, 4)
    assert ((0 <= out["pred_boxes"]) & (out["pred_boxes"] <= 1)).all()
    assert out["cross_attentions"][-1].shape == (3, 4, 5, 64)  # 32×32 → 8×8 cells
    assert_close(out["cross_attentions"][-1].sum(-1), torch.ones(3, 4, 5))
    assert len(out["aux_outputs"]) == 2 and out["aux_outputs"][0]["pred_boxes"].shape == (3, 5, 4)
    with pytest.raises(ShapeError, match="images: expected 4 dimensions"):
        model(images[0])
    with pytest.raises(ShapeError, match="features: expected 64 channels"):
        model.predict_from_features(torch.randn(1, 3, 4, 4))
    with pytest.raises(TypeError, match="DetrForObjectDetection"):
        DETR.from_reference(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="backbone_channels"):
        DETR(2, backbone=torch.nn.Identity())


# ----------------------------------------------------------------------------------------------- boxes


def test_box_formats_round_trip():
    boxes = torch.rand(10, 4)
    assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(boxes)), boxes)
    assert_close(box_cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 0.2, 0.4])), torch.tensor([0.4, 0.3, 0.6, 0.7]))


def test_iou_and_giou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    cases = {  # other box: (IoU, GIoU) worked out on paper
        "identical": ([0.0, 0.0, 2.0, 2.0], 1.0, 1.0),
        "nested": ([0.5, 0.5, 1.5, 1.5], 0.25, 0.25),  # 1 / 4; the enclosing box is a itself
        "overlapping": ([1.0, 1.0, 3.0, 3.0], 1 / 7, 1 / 7 - 2 / 9),  # ∩ 1, ∪ 7, enclosing 9
        "disjoint": ([3.0, 0.0, 4.0, 1.0], 0.0, -(8 - 5) / 8),  # ∪ 5, enclosing 4 × 2 = 8
        "touching": ([2.0, 0.0, 4.0, 2.0], 0.0, 0.0),  # ∪ 8 = enclosing
    }
    for name, (other, iou, giou) in cases.items():
        b = torch.tensor([other])
        assert_close(box_iou(a, b), torch.tensor([[iou]]), msg=name)
        assert_close(generalized_box_iou(a, b), torch.tensor([[giou]]), msg=name)
    far = generalized_box_iou(a, torch.tensor([[10.0, 10.0, 11.0, 11.0]]))
    assert -1 < far.item() < generalized_box_iou(a, torch.tensor([[3.0, 0.0, 4.0, 1.0]])).item(), "farther is worse"


def test_giou_matches_reference_on_random_boxes():
    torch.manual_seed(0)
    b1, b2 = box_cxcywh_to_xyxy(torch.rand(7, 4)), box_cxcywh_to_xyxy(torch.rand(5, 4))
    assert_close(generalized_box_iou(b1, b2), hf_giou(b1, b2))
    assert generalized_box_iou(b1, b2).shape == (7, 5)


def test_box_errors_name_the_argument():
    with pytest.raises(ValueError, match="boxes2: expected corners"):
        box_iou(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[1.0, 1, 0, 0]]))
    with pytest.raises(ShapeError, match=r"boxes1: expected shape \(\.\.\., 4\)"):
        generalized_box_iou(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ShapeError, match=r"boxes1: expected shape \(n, 4\)"):
        box_iou(torch.zeros(2, 2, 4), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="boxes: expected a torch.Tensor"):
        box_cxcywh_to_xyxy([0.5, 0.5, 1, 1])


# ----------------------------------------------------------------------------------------- matching and loss


def random_case(seed, counts=(3, 0, 1, 5), queries=6, classes=4):
    """Predictions and targets for len(counts) images; an image with 0 objects included by default."""
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(len(counts), queries, classes + 1, generator=g),
               "pred_boxes": torch.rand(len(counts), queries, 4, generator=g) * 0.5 + 0.1}
    targets = [{"class_labels": torch.randint(0, classes, (k,), generator=g),
                "boxes": torch.rand(k, 4, generator=g) * 0.5 + 0.1} for k in counts]
    return outputs, targets


def as_reference(outputs):
    return {"logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]}


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_match_equals_reference(seed):
    outputs, targets = random_case(seed)
    reference = HungarianMatcher(class_cost=1.0, bbox_cost=5.0, giou_cost=2.0)(as_reference(outputs), targets)
    ours = hungarian_match(outputs, targets)
    assert len(ours) == 4 and ours[1][0].numel() == 0 and ours[1][1].numel() == 0
    for (p, t), (rp, rt) in zip(ours, reference):
        assert p.dtype == t.dtype == torch.int64
        assert torch.equal(p, rp) and torch.equal(t, rt)
    weighted = hungarian_match(outputs, targets, cost_class=3.0, cost_bbox=0.0, cost_giou=0.5)
    expected = HungarianMatcher(class_cost=3.0, bbox_cost=0.0, giou_cost=0.5)(as_reference(outputs), targets)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(weighted, expected))


def test_hungarian_match_in_chunks_equals_reference():
    counts = [int(k) for k in torch.randint(0, 4, (150,), generator=torch.Generator().manual_seed(0))]
    outputs, targets = random_case(9, counts=counts)  # more images than one chunk of the batched cost
    reference = HungarianMatcher(class_cost=1.0, bbox_cost=5.0, giou_cost=2.0)(as_reference(outputs), targets)
    ours = hungarian_match(outputs, targets)
    assert len(ours) == 150
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ours, reference))


def test_hungarian_match_is_the_cheapest_assignment():
    outputs, targets = random_case(7, counts=(3,), queries=5)
    cost = matching_cost(outputs["pred_logits"][0], outputs["pred_boxes"][0], targets[0]["class_labels"],
                         targets[0]["boxes"])
    (rows, cols), = hungarian_match(outputs, targets)
    best = min(sum(cost[q, j] for j, q in enumerate(qs)) for qs in itertools.permutations(range(5), 3))
    assert_close(cost[rows, cols].sum(), best)
    assert len(set(rows.tolist())) == 3 and sorted(cols.tolist()) == [0, 1, 2]


@pytest.mark.parametrize("seed, eos_coef", [(0, 0.1), (1, 0.1), (2, 0.5), (3, 1.0)])
def test_set_prediction_loss_equals_reference(seed, eos_coef):
    outputs, targets = random_case(seed)
    matcher = HungarianMatcher(class_cost=1.0, bbox_cost=5.0, giou_cost=2.0)
    reference = ImageLoss(matcher, num_classes=4, eos_coef=eos_coef, losses=["labels", "boxes"])
    expected = reference(as_reference(outputs), targets)
    actual = set_prediction_loss(outputs, targets, num_classes=4, eos_coef=eos_coef)
    assert set(actual) == {"loss_ce", "loss_bbox", "loss_giou"}
    for name in actual:
        assert_close(actual[name], expected[name], msg=name)


def test_set_prediction_loss_gradients_and_an_empty_batch():
    outputs, targets = random_case(4)
    outputs = {k: v.requires_grad_() for k, v in outputs.items()}
    sum(set_prediction_loss(outputs, targets, 4).values()).backward()
    unmatched = torch.ones(6, dtype=torch.bool)
    unmatched[hungarian_match(outputs, targets)[0][0]] = False
    assert (outputs["pred_boxes"].grad[0, unmatched] == 0).all(), "only matched queries get a box gradient"
    assert (outputs["pred_boxes"].grad[0, ~unmatched] != 0).any()
    empty = [{"class_labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}] * 4
    losses = set_prediction_loss(outputs, empty, 4)
    assert losses["loss_bbox"] == 0 and losses["loss_giou"] == 0
    no_object = torch.full((4 * 6,), 4)
    assert_close(losses["loss_ce"], torch.nn.functional.cross_entropy(outputs["pred_logits"].flatten(0, 1), no_object))


def test_matching_and_loss_errors_name_the_argument():
    outputs, targets = random_case(0)
    with pytest.raises(ValueError, match="targets: expected a list of 4 dicts"):
        hungarian_match(outputs, targets[:3])
    with pytest.raises(KeyError, match="pred_logits"):
        hungarian_match({"pred_boxes": outputs["pred_boxes"]}, targets)
    with pytest.raises(ShapeError, match=r"outputs\['pred_boxes'\]: expected shape \(4, 6, 4\)"):
        hungarian_match({**outputs, "pred_boxes": outputs["pred_boxes"][:, :5]}, targets)
    with pytest.raises(ShapeError, match=r"targets\[2\]"):
        hungarian_match(outputs, targets[:2] + [{"class_labels": torch.zeros(2, dtype=torch.long),
                                                 "boxes": torch.zeros(3, 4)}] + targets[3:])
    with pytest.raises(ValueError, match="at least one non-zero cost"):
        hungarian_match(outputs, targets, 0.0, 0.0, 0.0)
    with pytest.raises(ShapeError, match="expected 4 classes"):
        set_prediction_loss(outputs, targets, num_classes=3)


# --------------------------------------------------------------------------------------- average precision


def coco_eval(detections, targets, size=32.0):
    """AP50 and AP 0.5:0.95 by pycocotools on the same detections, boxes in pixels as (x, y, w, h)."""
    coco = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")

    def xywh(boxes):
        corners = box_cxcywh_to_xyxy(boxes.double() * size)
        return torch.cat([corners[:, :2], corners[:, 2:] - corners[:, :2]], 1).tolist()

    classes = {int(c) for t in targets for c in t["class_labels"]} | {int(c) for d in detections for c in d["labels"]}
    annotations = []
    for i, t in enumerate(targets):
        for c, b in zip(t["class_labels"], xywh(t["boxes"])):  # ids from 1: COCOeval reads id 0 as "no match"
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                                "bbox": b, "area": b[2] * b[3], "iscrowd": 0})
    results = [{"image_id": i + 1, "category_id": int(c) + 1, "bbox": b, "score": float(s)}
               for i, d in enumerate(detections) for c, b, s in zip(d["labels"], xywh(d["boxes"]), d["scores"])]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = coco.COCO()
        truth.dataset = {"images": [{"id": i + 1} for i in range(len(targets))], "annotations": annotations,
                         "categories": [{"id": c + 1} for c in sorted(classes)]}
        truth.createIndex()
        evaluation = cocoeval.COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[1], evaluation.stats[0]


def noisy_detections(targets, seed, classes=3):
    """Jittered copies of the objects with random scores, some with the wrong label, plus random false alarms."""
    g = torch.Generator().manual_seed(seed)
    detections = []
    for t in targets:
        k, extra = len(t["class_labels"]), int(torch.randint(0, 4, (1,), generator=g))
        jitter = 0.15 * t["boxes"][:, 2:].repeat(1, 2) * torch.randn(k, 4, generator=g)  # relative to the size
        boxes = torch.cat([t["boxes"] + jitter, torch.rand(extra, 4, generator=g)])
        boxes = torch.cat([boxes[:, :2], boxes[:, 2:].abs() + 0.02], 1)
        labels = torch.cat([t["class_labels"], torch.randint(0, classes, (extra,), generator=g)])
        flip = torch.rand(k + extra, generator=g) < 0.15
        labels = torch.where(flip, torch.randint(0, classes, (k + extra,), generator=g), labels)
        detections.append({"scores": torch.rand(k + extra, generator=g), "labels": labels, "boxes": boxes})
    return detections


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_equals_cocoeval(seed):
    g = torch.Generator().manual_seed(100 + seed)
    targets = []
    for i in range(12):
        k = 0 if i == 3 else int(torch.randint(1, 4, (1,), generator=g))
        boxes = torch.cat([torch.rand(k, 2, generator=g) * 0.6 + 0.2, torch.rand(k, 2, generator=g) * 0.3 + 0.05], 1)
        targets.append({"class_labels": torch.randint(0, 3, (k,), generator=g), "boxes": boxes})
    detections = noisy_detections(targets, seed)
    ap50, ap = coco_eval(detections, targets)
    assert 0.05 < ap < ap50 < 0.98, "a case where neither metric is trivial"
    assert average_precision(detections, targets, 0.5) == pytest.approx(ap50, abs=1e-9)
    assert coco_average_precision(detections, targets) == pytest.approx(ap, abs=1e-9)


def test_average_precision_on_scenes_and_its_extremes():
    targets = make_scenes(20, seed=1).targets
    perfect = [{"scores": torch.ones(len(t["boxes"])), "labels": t["class_labels"], "boxes": t["boxes"]}
               for t in targets]
    assert average_precision(perfect, targets) == 1.0 and coco_average_precision(perfect, targets) == 1.0
    nothing = [{"scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
               for _ in targets]
    assert average_precision(nothing, targets) == 0.0
    detections = noisy_detections(targets, 0, classes=2)
    assert average_precision(detections, targets) == pytest.approx(coco_eval(detections, targets)[0], abs=1e-9)
    with pytest.raises(ValueError, match="iou_threshold"):
        average_precision(perfect, targets, iou_threshold=0.0)
    with pytest.raises(ValueError, match="detections: expected one dict per image"):
        average_precision(perfect[:3], targets)
    with pytest.raises(ShapeError, match=r"detections\[0\]"):
        average_precision([{**perfect[0], "boxes": torch.zeros(1, 3)}] + perfect[1:], targets)


def test_postprocess_drops_the_no_object_class():
    logits = torch.tensor([[[2.0, 0.0, 5.0], [0.0, 1.0, -1.0]]])
    (detection,) = postprocess({"pred_logits": logits, "pred_boxes": torch.rand(1, 2, 4)})
    assert detection["labels"].tolist() == [0, 1]
    assert_close(detection["scores"], logits.softmax(-1)[0, [0, 1], [0, 1]])


# ----------------------------------------------------------------------------------------------- training


def test_training_recipe_lowers_the_loss_and_evaluates():
    scenes = make_scenes(64, seed=0)
    model = small_detr(num_classes=2, num_queries=4, d_model=32)
    assert model.temperature == 20 and model.backbone(scenes.images[:1]).shape == (1, 64, 8, 8)
    seen = []
    history = train_detr(model, scenes, epochs=4, batch_size=16, lr=2e-3, monitor=seen.append, monitor_every=5)
    assert len(history) == 4 and history[-1] < history[0] and seen == [0, 5, 10, 15, 16]
    scores = evaluate(model, scenes[:16])
    assert set(scores) == {"AP50", "AP"} and 0.0 <= scores["AP"] <= scores["AP50"] <= 1.0
    outputs = model(scenes.images[:4], auxiliary=True)
    single = detr_loss({k: v for k, v in outputs.items() if k != "aux_outputs"}, scenes.targets[:4], 2)
    assert detr_loss(outputs, scenes.targets[:4], 2) > single, "auxiliary losses add to the final one"
