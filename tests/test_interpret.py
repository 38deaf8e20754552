"""attnbook.interpret against captum, networkx and hand computations; data.syntax trees; every documented error."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from torch import nn

from attnbook.core import MultiHeadAttention
from attnbook.data.syntax import (NEGATIVE, POSITIVE, RELATIONS, WORDS, cue_index, make_sentences,
                                  sentiment_sentences)
from attnbook.errors import DTypeError, ShapeError
from attnbook.interpret import (arc_accuracy, attention_flow, attention_rollout, attention_share, best_head,
                                best_offset, check_attentions, edit_attention, embedding_forward, erasure_curve,
                                gradient_x_input, head_frame, head_view, integrated_gradients, js_divergence,
                                offset_accuracy, offset_keys, permute_rows, quadrature, random_scores,
                                same_word_keys, top_k_keep, total_variation, uniform_rows, word_attention)

captum_attr = pytest.importorskip("captum.attr")


def random_attentions(layers=3, batch=2, heads=4, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(batch, heads, n, n, generator=g, dtype=torch.float64), -1)
            for _ in range(layers)]


class TwoLayer(nn.Module):
    def __init__(self, features=7, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(features, 11), nn.Tanh(), nn.Linear(11, classes))

    def forward(self, x):
        return self.net(x.flatten(1))


# ---------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("target", [0, 2, "tensor"])
def test_gradient_x_input_equals_captum(target):
    model = TwoLayer().double()
    x = torch.randn(4, 7, dtype=torch.float64)
    t = torch.tensor([0, 2, 1, 1]) if target == "tensor" else target
    ours = gradient_x_input(model, x, t)
    theirs = captum_attr.InputXGradient(model).attribute(x.clone().requires_grad_(True), target=t)
    torch.testing.assert_close(ours, theirs.detach())


@pytest.mark.parametrize(("method", "steps"), [("gausslegendre", 1), ("gausslegendre", 7), ("gausslegendre", 32),
                                               ("riemann_middle", 7), ("riemann_trapezoid", 7),
                                               ("riemann_left", 32), ("riemann_right", 2)])
def test_integrated_gradients_equals_captum(method, steps):
    model = TwoLayer(features=6).double()
    x = torch.randn(3, 2, 3, dtype=torch.float64)
    baseline = torch.randn(3, 2, 3, dtype=torch.float64)
    target = torch.tensor([1, 0, 2])
    ours = integrated_gradients(model, x, baseline=baseline, target=target, steps=steps, method=method)
    theirs = captum_attr.IntegratedGradients(model).attribute(x, baselines=baseline, target=target,
                                                              n_steps=steps, method=method)
    torch.testing.assert_close(ours, theirs)


def test_integrated_gradients_scalar_output_zero_baseline_and_completeness():
    def forward(x):
        return (x ** 3).sum(-1) + torch.sin(x).prod(-1)

    x = torch.randn(5, 4, dtype=torch.float64)
    ours = integrated_gradients(forward, x, steps=32)
    theirs = captum_attr.IntegratedGradients(forward).attribute(x, n_steps=32)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours.sum(-1), forward(x) - forward(torch.zeros_like(x)))  # smooth: exact


def test_integrated_gradients_row_baseline_broadcasts():
    model = TwoLayer().double()
    x = torch.randn(3, 7, dtype=torch.float64)
    row = torch.randn(7, dtype=torch.float64)
    torch.testing.assert_close(integrated_gradients(model, x, baseline=row, target=1),
                               integrated_gradients(model, x, baseline=row.expand(3, 7), target=1))
    torch.testing.assert_close(integrated_gradients(model, x, baseline=0.5, target=1),
                               integrated_gradients(model, x, baseline=torch.full_like(x, 0.5), target=1))


def test_quadrature_rules_integrate_polynomials():
    for method, exact_degree in (("gausslegendre", 9), ("riemann_middle", 1)):
        alphas, weights = quadrature(5, method)
        assert weights.sum().item() == pytest.approx(1.0)
        for degree in range(exact_degree + 1):
            assert (weights * alphas ** degree).sum().item() == pytest.approx(1 / (degree + 1))
    _, trapezoid = quadrature(4, "riemann_trapezoid")
    assert trapezoid.sum().item() == pytest.approx(3 / 4)  # captum's weights sum to (n - 1) / n


def test_embedding_forward_replaces_the_embedding_output():
    embedding = nn.Embedding(10, 3)
    head = nn.Linear(3, 2)

    def model(ids, scale):
        return head(embedding(ids).mean(1)) * scale

    ids, scale = torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1.0], [2.0]])
    forward = embedding_forward(model, embedding, ids, scale=scale)
    vectors = embedding(ids).detach()
    torch.testing.assert_close(forward(vectors), model(ids, scale))
    doubled = forward(torch.cat([vectors, 2 * vectors]))  # two path points
    torch.testing.assert_close(doubled[2:], head(2 * vectors.mean(1)) * scale)
    with pytest.raises(ShapeError, match="vectors"):
        forward(torch.zeros(3, 2, 3))
    with pytest.raises(TypeError, match="embedding"):
        embedding_forward(model, head, ids)


def test_gradient_errors_name_the_argument():
    model = TwoLayer()
    x = torch.randn(2, 7)
    with pytest.raises(IndexError, match="target"):
        gradient_x_input(model, x, target=3)
    with pytest.raises(IndexError, match="target"):
        integrated_gradients(model, x, target=torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="target"):
        gradient_x_input(model, x)  # (batch, classes) needs a target
    with pytest.raises(ValueError, match="target"):
        gradient_x_input(lambda v: v.sum(-1), x, target=0)  # (batch,) output takes none
    with pytest.raises(ShapeError, match="target"):
        gradient_x_input(model, x, target=torch.tensor([0, 1, 2]))
    with pytest.raises(DTypeError, match="target"):
        gradient_x_input(model, x, target=torch.tensor([0.0, 1.0]))
    with pytest.raises(DTypeError, match="inputs"):
        gradient_x_input(model, torch.ones(2, 7, dtype=torch.long), target=0)
    with pytest.raises(ShapeError, match="baseline"):
        integrated_gradients(model, x, baseline=torch.zeros(3, 7), target=0)
    with pytest.raises(ShapeError, match="forward"):
        gradient_x_input(lambda v: v.sum(), x)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(model, x, target=0, steps=0)
    with pytest.raises(ValueError, match="method"):
        integrated_gradients(model, x, target=0, method="simpson")


# ------------------------------------------------------------------------------------------ rollout, flow


def test_rollout_equals_a_direct_hand_computation():
    layers = random_attentions()
    expected = []
    for b in range(2):
        product = torch.eye(5, dtype=torch.float64)
        for a in layers:
            m = 0.3 * a[b].mean(0) + 0.7 * torch.eye(5, dtype=torch.float64)
            m = m / m.sum(-1, keepdim=True)
            product = m @ product
        expected.append(product)
    torch.testing.assert_close(attention_rollout(layers, residual_weight=0.3), torch.stack(expected))


def test_rollout_known_cases():
    layers = random_attentions()
    eye = torch.eye(5, dtype=torch.float64).expand(2, 5, 5)
    torch.testing.assert_close(attention_rollout(layers, residual_weight=0.0), eye)  # residual only
    product = layers[2].mean(1) @ layers[1].mean(1) @ layers[0].mean(1)
    torch.testing.assert_close(attention_rollout(layers, residual_weight=1.0), product)
    for fusion in ("mean", "max", "min"):
        rows = attention_rollout(layers, head_fusion=fusion).sum(-1)
        torch.testing.assert_close(rows, torch.ones_like(rows))  # still distributions
    uniform = [torch.full((1, 2, 4, 4), 0.25, dtype=torch.float64)] * 3
    torch.testing.assert_close(attention_rollout(uniform, residual_weight=1.0), uniform[0][:, 0])
    fused_max = attention_rollout(layers[:1], residual_weight=1.0, head_fusion="max")
    torch.testing.assert_close(fused_max, layers[0].amax(1) / layers[0].amax(1).sum(-1, keepdim=True))


def test_flow_on_a_tiny_graph_against_networkx_by_hand():
    layers = random_attentions(layers=2, batch=1, heads=2, n=3, seed=1)
    mixed = [0.5 * a[0].mean(0) + 0.5 * torch.eye(3, dtype=torch.float64) for a in layers]
    mixed = [m / m.sum(-1, keepdim=True) for m in mixed]
    graph = nx.DiGraph()
    for layer, m in enumerate(mixed):
        for i in range(3):
            for j in range(3):
                graph.add_edge(f"{layer + 1}:{i}", f"{layer}:{j}", capacity=float(m[i, j]))
    raw = torch.tensor([[nx.maximum_flow_value(graph, f"2:{i}", f"0:{j}") for j in range(3)] for i in range(3)],
                       dtype=torch.float64)
    by_formula = torch.minimum(mixed[1][:, :, None], mixed[0][None]).sum(1)  # one middle node per path
    torch.testing.assert_close(raw, by_formula)
    torch.testing.assert_close(attention_flow(layers)[0], raw / raw.sum(-1, keepdim=True))


def test_flow_of_one_layer_is_its_rollout():
    layers = random_attentions(layers=1)
    torch.testing.assert_close(attention_flow(layers), attention_rollout(layers))


def test_attention_errors_name_the_problem():
    good = random_attentions()
    with pytest.raises(ShapeError, match=r"attentions\[1\].*layer 0"):
        attention_rollout([good[0], good[1][:, :3]])
    with pytest.raises(ShapeError, match=r"attentions\[0\].*4 dimensions"):
        attention_rollout([good[0][0]])
    with pytest.raises(ShapeError, match="square"):
        attention_rollout([good[0][..., :4]])
    with pytest.raises(ValueError, match="sum to one"):
        attention_rollout([good[0] * 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        attention_rollout([good[0] - 0.5])
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])
    with pytest.raises(TypeError, match="sequence"):
        attention_rollout(good[0])
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(good, head_fusion="median")
    with pytest.raises(ValueError, match="residual_weight"):
        attention_rollout(good, residual_weight=1.5)
    with pytest.raises(ValueError, match="max_tokens"):
        attention_flow(random_attentions(n=6), max_tokens=5)
    zero_row = good[0].clone()
    zero_row[0, 0, 1] = 0.0  # a fully masked query is accepted
    assert len(check_attentions([zero_row])) == 1


# ---------------------------------------------------------------------------------------------------- heads


def test_attention_share_by_hand():
    layers = random_attentions(layers=2, batch=2, heads=3, n=4)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    share = attention_share(layers, offset_keys(4, -1, 2), mask)
    queries = [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]
    expected = torch.stack([torch.stack([torch.stack([a[b, h, i, i - 1] for b, i in queries]).mean()
                                         for h in range(3)]) for a in layers])
    torch.testing.assert_close(share, expected)
    first = torch.zeros(2, 4, dtype=torch.bool)
    first[:, 0] = True
    expected_first = torch.stack([a[0, :, :, 0].sum(-1) + a[1, :, :3, 0].sum(-1) for a in layers]) / 7
    torch.testing.assert_close(attention_share(layers, first, mask), expected_first)
    with pytest.raises(ShapeError, match="keys"):
        attention_share(layers, torch.ones(3, 4, dtype=torch.bool))


def test_same_word_keys_and_word_attention():
    word_ids = torch.tensor([[-1, 0, 1, 1, -1]])
    keys = same_word_keys(word_ids)
    assert keys[0, 2, 3] and keys[0, 3, 2] and not keys[0, 2, 2] and not keys[0, 0, 4]
    attention = torch.softmax(torch.randn(2, 5, 5, dtype=torch.float64), -1)
    words = word_attention(attention, [None, 0, 1, 1, None])
    expected = torch.stack([
        torch.stack([attention[:, 1, 1], attention[:, 1, 2] + attention[:, 1, 3]], -1),
        torch.stack([(attention[:, 2, 1] + attention[:, 3, 1]) / 2,
                     (attention[:, 2, 2:4].sum(-1) + attention[:, 3, 2:4].sum(-1)) / 2], -1)], -2)
    torch.testing.assert_close(words, expected)
    with pytest.raises(ShapeError, match="word_ids"):
        word_attention(attention, [0, 1])


def test_arc_and_offset_accuracy_by_hand():
    arcs = [[(0, 1, "det"), (1, 2, "nsubj"), (2, -1, "root")], [(0, 2, "det"), (1, 2, "amod"), (2, -1, "root")]]
    maps = []
    for target in ([1, 0, 1], [2, 2, 0]):  # word i attends most to word target[i]
        m = torch.full((1, 1, 3, 3), 0.1)
        for i, t in enumerate(target):
            m[0, 0, i, t] = 0.8
        maps.append(m)
    assert arc_accuracy(maps, arcs, "det").item() == 1.0
    assert arc_accuracy(maps, arcs, "nsubj").item() == 0.0  # word 1 of sentence 0 attends to 0, not 2
    assert arc_accuracy(maps, arcs, "det", "head").item() == 1.0  # both nouns look at their determiner
    assert arc_accuracy(maps, arcs, "amod", "head").item() == 0.0  # ... and not at the adjective
    assert offset_accuracy(arcs, [3, 3], "det", "dependent", [1, 2]) == {1: 0.5, 2: 0.5}
    assert best_offset(arcs, [3, 3], "nsubj")[1:] == (1, 1.0)
    assert best_head(maps, arcs, "det") == ("dependent", 0, 0, 1.0)
    with pytest.raises(ValueError, match="relation"):
        arc_accuracy(maps, arcs, "pobj")
    with pytest.raises(ValueError, match="direction"):
        arc_accuracy(maps, arcs, "det", "sideways")
    with pytest.raises(ValueError, match="arcs"):
        arc_accuracy(maps[:1], arcs, "det")


# ------------------------------------------------------------------------------------- erasure, edits, view


def test_erasure_curve_removes_the_top_ranked_tokens():
    values = torch.tensor([[1.0, 5.0, 2.0, 0.0], [3.0, 1.0, 4.0, 2.0]])

    def output(keep):
        return (values * keep).sum(-1)

    scores = values.clone()
    candidates = torch.tensor([[True, True, True, False], [True, True, True, True]])
    curve = erasure_curve(output, scores, [0, 1, 2, 5], candidates)
    torch.testing.assert_close(curve, torch.tensor([[0.0, 0.0], [5.0, 4.0], [7.0, 7.0], [8.0, 10.0]]))
    keep = top_k_keep(scores, 1, candidates)
    assert keep.tolist() == [[True, False, True, True], [True, True, False, True]]
    random = random_scores(candidates, torch.Generator().manual_seed(0))
    assert random.shape == candidates.shape
    with pytest.raises(ShapeError, match="candidates"):
        erasure_curve(output, scores, [1], candidates[:, :3])
    with pytest.raises(ShapeError, match="output"):
        erasure_curve(lambda keep: keep.float(), scores, [1])
    with pytest.raises(ValueError, match="k"):
        top_k_keep(scores, -1, candidates)


def test_edit_attention_uses_the_core_hook_and_restores_it():
    torch.manual_seed(0)
    module = MultiHeadAttention(8, 2)
    x = torch.randn(3, 5, 8)
    mask = torch.ones(3, 1, 1, 5, dtype=torch.bool)
    mask[0, ..., 3:] = False
    plain, weights = module(x, x, x, mask=mask)
    with edit_attention(module, uniform_rows):
        flat, flat_weights = module(x, x, x, mask=mask)
    v = module.split_heads(module.v_proj(x))
    expected = module.out_proj(module.merge_heads(flat_weights @ v))
    torch.testing.assert_close(flat, expected)
    torch.testing.assert_close(flat_weights[0, :, :, :3], torch.full((2, 5, 3), 1 / 3))
    assert module.normalize == "softmax"
    torch.testing.assert_close(module(x, x, x, mask=mask)[0], plain)
    with edit_attention(module, permute_rows(torch.Generator().manual_seed(1))):
        _, shuffled = module(x, x, x, mask=mask)
    torch.testing.assert_close(shuffled.sort(-1).values, weights.sort(-1).values)  # same weights, moved
    assert shuffled[0, ..., 3:].abs().max() == 0  # masked keys stay at zero
    with pytest.raises(TypeError, match="module"):
        with edit_attention(nn.Linear(2, 2), uniform_rows):
            pass


def test_distribution_distances():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(total_variation(p, q), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(js_divergence(p, q), torch.tensor([0.0, torch.log(torch.tensor(2.0))]))


def test_head_view_has_one_frame_per_head():
    layers = [torch.softmax(torch.randn(1, 3, 4, 4), -1) for _ in range(2)]
    view = head_view(layers, ["[CLS]", "a", "b", "[SEP]"])
    chooser, stack = view.children
    assert len(stack.children) == 6 and chooser.options[-1] == "layer 2, head 3"
    assert len({image.value for image in stack.children}) == 6
    assert head_frame(layers[0][0, 0], ["w", "x", "y", "z"], "t").startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="weights"):
        head_frame(layers[0][0, 0], ["w", "x"], "t")
    with pytest.raises(ValueError, match="one sentence"):
        head_view([torch.softmax(torch.randn(2, 3, 4, 4), -1)], ["a", "b", "c", "d"])


# ---------------------------------------------------------------------------------------------------- syntax


def test_grammar_writes_trees():
    sentences = make_sentences(300, seed=3)
    assert [s.words for s in sentences] == [s.words for s in make_sentences(300, seed=3)]
    seen = set()
    for s in sentences:
        assert s.heads.count(-1) == 1 and len(s.heads) == len(s.words) == len(s.relations)
        for i in range(len(s.words)):  # every word reaches the root without a cycle
            node, steps = i, 0
            while node != -1:
                node, steps = s.heads[node], steps + 1
                assert steps <= len(s.words)
        seen |= set(s.relations)
        assert all(w in WORDS for w in s.words)
        assert all(s.words[d] in ("the", "a", "an", "this", "that", "every") for d, _, r in s.arcs if r == "det")
    assert seen == set(RELATIONS)
    with pytest.raises(ValueError, match="n"):
        make_sentences(0)


def test_sentiment_sentences_label_the_subject_adjective():
    sentences, labels = sentiment_sentences(200, seed=4)
    assert sum(labels) == 100
    for s, label in zip(sentences, labels):
        cue = s.words[cue_index(s)]
        assert cue in (POSITIVE if label else NEGATIVE)
        verb = s.heads.index(-1)
        assert cue_index(s) < verb  # the cue sits in the subject, before the verb
