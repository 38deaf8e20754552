"""The memory network: its hop is the core's attention, its encodings follow the paper, padding is inert.

There is no memory network in PyTorch or HuggingFace to copy weights into, so the reference here is the
paper's equations written out word by word and hop by hop (`naive_forward`), compared at float tolerance.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.core import attention, dot_score
from attnbook.data.babi import Vocab, generate_task, parse_babi, vectorize
from attnbook.errors import DTypeError, ShapeError
from attnbook.memory import (
    POSITION_SCALE,
    MemN2N,
    Recipe,
    StackedMemN2N,
    add_empty_memories,
    clip_per_restart,
    attention_on_facts,
    bag_of_words,
    embed_sentences,
    fill_memory,
    hop,
    position_encoding,
    train_memn2n,
    word_weights,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def random_story(generator, batch=4, slots=7, words=5, vocab=11):
    """Padded stories: ragged sentence lengths, ragged story lengths (at least one sentence)."""
    stories = torch.randint(1, vocab, (batch, slots, words), generator=generator)
    lengths = torch.randint(1, words + 1, (batch, slots), generator=generator)
    stories = stories * (torch.arange(words) < lengths[..., None])
    n_real = torch.randint(1, slots + 1, (batch,), generator=generator)
    mask = torch.arange(slots) < n_real[:, None]
    stories = stories * mask[..., None]
    queries = torch.randint(1, vocab, (batch, 4), generator=generator)
    queries[:, 3] = 0  # a padded query word
    return stories, queries, mask


def naive_sentence(matrix, tokens, position):
    """Σ_j s l_j ⊙ E x_j for one sentence, with J its own number of words (paper, section 4.1) and s the
    model's `POSITION_SCALE` (1 without position encoding, where l_j = 1)."""
    words = [t for t in tokens.tolist() if t != 0]
    if not words:
        return torch.zeros(matrix.shape[1])
    pe = (POSITION_SCALE * position_encoding(len(words), matrix.shape[1]) if position
          else torch.ones(len(words), matrix.shape[1]))
    return sum(pe[j] * matrix[w] for j, w in enumerate(words))


def naive_forward(model, stories, queries, mask):
    """The paper's K-hop forward pass, one question and one sentence at a time, with core attention per hop."""
    logits, weights = [], []
    for b in range(stories.shape[0]):
        u = naive_sentence(model.embeddings[0], queries[b], model.use_position)
        hops = []
        for k in range(model.hops):
            a, c = model.embeddings[k], model.embeddings[k + 1]  # A^{k+1} = C^k
            m = torch.stack([naive_sentence(a, s, model.use_position) for s in stories[b]])
            v = torch.stack([naive_sentence(c, s, model.use_position) for s in stories[b]])
            if model.temporal is not None:
                m = m + model.temporal[k, : m.shape[0]]
                v = v + model.temporal[k + 1, : v.shape[0]]
            o, p = attention(u[None], m, v, mask=mask[b][None], score="dot")
            u = u + o[0]
            hops.append(p[0])
        logits.append(model.embeddings[model.hops] @ u)
        weights.append(torch.stack(hops))
    return torch.stack(logits), torch.stack(weights)


# ------------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("sentence_len,embed_dim", [(1, 1), (4, 20), (7, 3)])
def test_position_encoding_is_the_papers_formula(sentence_len, embed_dim):
    pe = position_encoding(sentence_len, embed_dim)
    assert pe.shape == (sentence_len, embed_dim)
    J, d = sentence_len, embed_dim
    for j in range(1, J + 1):
        for k in range(1, d + 1):
            expected = (1 - j / J) - (k / d) * (1 - 2 * j / J)
            assert abs(pe[j - 1, k - 1].item() - expected) < 1e-6


def test_position_encoding_known_values():
    # a one-word sentence: l_k1 = 0 - (k/d)(1 - 2) = k/d; the last word of any sentence gets k/d too
    torch.testing.assert_close(position_encoding(1, 4)[0], torch.tensor([0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(position_encoding(5, 4)[-1], torch.tensor([0.25, 0.5, 0.75, 1.0]))
    with pytest.raises(ValueError, match="sentence_len"):
        position_encoding(0, 4)


def test_word_weights_use_each_sentences_own_length():
    tokens = torch.tensor([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    weights = word_weights(tokens, 6)
    torch.testing.assert_close(weights[0, :3], position_encoding(3, 6))
    torch.testing.assert_close(weights[1, :1], position_encoding(1, 6))
    assert weights[0, 3:].eq(0).all() and weights[2].eq(0).all()


@pytest.mark.parametrize("position", [True, False])
def test_bag_of_words_embedding_equals_the_sum_over_words(position):
    g = torch.Generator().manual_seed(0)
    stories, _, _ = random_story(g)
    embeddings = torch.randn(3, 11, 6, generator=g)
    fast = embed_sentences(embeddings, stories.flatten(0, 1), position)  # (3, N, d)
    for k in range(3):
        slow = torch.stack([naive_sentence(embeddings[k], s, position) for s in stories.flatten(0, 1)])
        torch.testing.assert_close(fast[k], slow, **TOL)
    assert bag_of_words(stories, 11).shape == (*stories.shape[:-1], 22)


# ------------------------------------------------------------------------------------------- the hop


def test_hop_is_core_attention_with_dot_scores():
    g = torch.Generator().manual_seed(1)
    u, keys, values = (torch.randn(4, n, 5, generator=g) for n in (1, 6, 6))
    mask = torch.rand(4, 1, 6, generator=g) > 0.3
    mask[..., 0] = True
    o, p = hop(u, keys, values, mask)
    o_ref, p_ref = attention(u, keys, values, mask=mask, score="dot")
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(p, p_ref)
    torch.testing.assert_close(p, torch.softmax((u @ keys.transpose(1, 2)).masked_fill(~mask, -torch.inf), -1))


def test_linear_start_hop_uses_raw_scores():
    g = torch.Generator().manual_seed(2)
    u, keys, values = (torch.randn(3, n, 4, generator=g) for n in (1, 5, 5))
    mask = torch.tensor([True, True, True, False, False]).expand(3, 1, 5)
    o, p = hop(u, keys, values, mask, linear=True)
    expected = dot_score(u, keys) * mask
    torch.testing.assert_close(p, expected)
    torch.testing.assert_close(o, expected @ values)
    assert p[..., 3:].eq(0).all()


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("position,temporal", [(True, True), (False, True), (True, False)])
def test_model_matches_the_naive_paper_forward(hops, position, temporal):
    torch.manual_seed(hops)
    g = torch.Generator().manual_seed(hops)
    model = MemN2N(11, embed_dim=6, hops=hops, memory_size=7, position_encoding=position,
                   temporal_encoding=temporal, init_std=0.5)
    stories, queries, mask = random_story(g)
    logits, weights = model(stories, queries, mask)
    assert logits.shape == (4, 11) and weights.shape == (4, hops, 7)
    with torch.no_grad():
        ref_logits, ref_weights = naive_forward(model, stories, queries, mask)
    torch.testing.assert_close(logits, ref_logits, **TOL)
    torch.testing.assert_close(weights, ref_weights, **TOL)


def test_padding_never_receives_attention():
    g = torch.Generator().manual_seed(3)
    model = MemN2N(11, embed_dim=6, hops=3, memory_size=7, init_std=0.5)
    stories, queries, mask = random_story(g)
    for linear in (False, True):
        _, weights = model(stories, queries, mask, linear=linear)
        assert weights.masked_select(~mask[:, None, :]).eq(0).all()
    _, weights = model(stories, queries, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 3))


@settings(max_examples=20, deadline=None)
@given(extra=st.integers(0, 5), seed=st.integers(0, 10_000))
def test_extra_padding_slots_change_nothing(extra, seed):
    g = torch.Generator().manual_seed(seed)
    model = MemN2N(11, embed_dim=6, hops=2, memory_size=12, init_std=0.5)
    stories, queries, mask = random_story(g)
    logits, weights = model(stories, queries, mask)
    padded = torch.cat([stories, torch.zeros(4, extra, stories.shape[-1], dtype=torch.long)], 1)
    padded_mask = torch.cat([mask, torch.zeros(4, extra, dtype=torch.bool)], 1)
    logits2, weights2 = model(padded, queries, padded_mask)
    torch.testing.assert_close(logits2, logits, **TOL)
    torch.testing.assert_close(weights2[..., :7], weights, **TOL)


# ------------------------------------------------------------------------------------------- fixed buffer


def test_filled_memory_attends_empty_slots_as_zero_memories():
    """The released code's buffer by hand: pad the story to memory_size slots, zero the vectors of every slot
    after its last sentence (temporal ones too: their words are all nil), and mask nothing."""
    g = torch.Generator().manual_seed(5)
    model = MemN2N(11, embed_dim=6, hops=3, memory_size=10, init_std=0.5, fill_memory=True)
    stories, queries, mask = random_story(g)  # 7 slots, ragged stories
    logits, weights = model(stories, queries, mask)
    assert logits.shape == (4, 11) and weights.shape == (4, 3, 10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 3))
    assert weights[..., 7:].gt(0).all()  # empty slots receive attention
    with torch.no_grad():
        memory = model.memories(torch.cat([stories, torch.zeros(4, 3, 5, dtype=torch.long)], 1))  # (K+1, 4, 10, d)
        real = torch.cat([mask, torch.zeros(4, 3, dtype=torch.bool)], 1)
        memory = memory * real[None, :, :, None]
        u = model.embed(queries)[0, :, None, :]
        expected = []
        for k in range(3):
            o, p = attention(u, memory[k], memory[k + 1], score="dot")
            u = u + o
            expected.append(p)
        ref_logits = u[:, 0] @ model.embeddings[3].T
    torch.testing.assert_close(weights, torch.cat(expected, 1), **TOL)
    torch.testing.assert_close(logits, ref_logits, **TOL)


def test_filled_memory_ignores_how_far_the_batch_is_padded():
    g = torch.Generator().manual_seed(6)
    model = MemN2N(11, embed_dim=6, hops=2, memory_size=12, init_std=0.5, fill_memory=True)
    stories, queries, mask = random_story(g)
    logits, weights = model(stories, queries, mask)
    padded = torch.cat([stories, torch.zeros(4, 3, stories.shape[-1], dtype=torch.long)], 1)
    logits2, weights2 = model(padded, queries, torch.cat([mask, torch.zeros(4, 3, dtype=torch.bool)], 1))
    torch.testing.assert_close(logits2, logits, **TOL)
    torch.testing.assert_close(weights2, weights, **TOL)


def test_fill_memory_shapes_and_errors():
    memory, mask = torch.randn(3, 4, 7, 6), torch.arange(7) < torch.tensor([[2], [7], [1], [4]])
    filled, full = fill_memory(memory, mask, 9)
    assert filled.shape == (3, 4, 9, 6) and full.shape == (4, 9) and full.all()
    torch.testing.assert_close(filled[:, :, :7], memory * mask[None, :, :, None])
    assert filled[:, :, 7:].eq(0).all()
    with pytest.raises(ShapeError, match="at most 5 slots"):
        fill_memory(memory, mask, 5)


def test_training_with_a_filled_memory_keeps_the_buffer_for_evaluation():
    batch = small_batch()
    recipe = Recipe(hops=2, epochs=1, linear_epochs=1, optimizer="adam", fill_memory=True)
    result = train_memn2n(batch[torch.arange(30)], batch[torch.arange(30, 40)], 50, recipe, 2,
                          torch.Generator().manual_seed(0))
    assert result.model.fill_memory and result.model.memory_size == batch.stories.shape[1]
    _, weights = result.model.answer(batch)
    assert weights.shape == (40, 2, batch.stories.shape[1])
    assert weights.masked_select(~batch.memory_mask[:, None, :]).gt(0).all()  # empty slots are read
    assert not train_memn2n(batch, batch, 50, Recipe(hops=1, epochs=1, linear_start=False), 1).model.fill_memory


# ------------------------------------------------------------------------------------------- noise


def small_batch():
    items = parse_babi(generate_task(2, 40, seed=0).splitlines())
    return vectorize(items, Vocab(items), memory_size=20)


def test_empty_memories_keep_sentence_order():
    batch = small_batch()
    assert torch.equal(add_empty_memories(batch, 0.0).stories, batch.stories)
    noisy = add_empty_memories(batch, 0.5, torch.Generator().manual_seed(0))
    for b in range(len(batch)):
        real = batch.stories[b][batch.memory_mask[b]]
        kept = noisy.stories[b][noisy.stories[b].ne(0).any(-1)]
        assert torch.equal(kept, real[: len(kept)])  # same sentences, same order, oldest may fall off
        empties = noisy.memory_mask[b] & noisy.stories[b].eq(0).all(-1)
        assert noisy.memory_mask[b].sum() == len(kept) + empties.sum()  # empty memories are attendable
        facts = batch.stories[b][batch.supporting[b]]
        assert torch.equal(noisy.stories[b][noisy.supporting[b]], facts[: noisy.supporting[b].sum()])
    assert noisy.memory_mask.sum() > batch.memory_mask.sum()


def test_empty_memories_rate_error():
    with pytest.raises(ValueError, match="rate"):
        add_empty_memories(small_batch(), 1.0)


# ------------------------------------------------------------------------------------------- errors


def test_forward_errors_name_the_argument():
    model = MemN2N(11, embed_dim=6, hops=2, memory_size=7)
    stories, queries, mask = random_story(torch.Generator().manual_seed(0))
    with pytest.raises(ShapeError, match="stories: expected 3 dimensions"):
        model(stories[0], queries, mask)
    with pytest.raises(ShapeError, match="queries: expected batch size 4"):
        model(stories, queries[:2], mask)
    with pytest.raises(ShapeError, match="memory_size=7"):
        model(torch.cat([stories, stories], 1), queries, torch.cat([mask, mask], 1))
    with pytest.raises(DTypeError, match="mask"):
        model(stories, queries, mask.float())
    with pytest.raises(ShapeError, match="memory_mask"):
        model(stories, queries, mask[:1])
    with pytest.raises(TypeError, match="stories"):
        model(stories.tolist(), queries, mask)
    with pytest.raises(ValueError, match="hops"):
        MemN2N(11, hops=0)


# ------------------------------------------------------------------------------------------- training


def test_training_learns_task_1_and_keeps_the_lowest_training_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train_items = parse_babi(generate_task(1, 300, seed=0).splitlines())
    test_items = parse_babi(generate_task(1, 200, seed=1).splitlines())
    vocab = Vocab(train_items + test_items)
    train, test = vectorize(train_items, vocab, 10, 6, 3), vectorize(test_items, vocab, 10, 6, 3)
    recipe = Recipe(hops=2, epochs=15, halve_every=5, optimizer="adam")
    result = train_memn2n(train[torch.arange(270)], train[torch.arange(270, 300)], len(vocab), recipe, 2, g)
    assert result.best == min(range(2), key=result.train_loss.__getitem__)
    assert len(result.history) == result.linear_epochs + 15 and result.linear_epochs >= 1
    assert result.history[-1][result.best] < result.history[0][result.best]
    untrained = MemN2N(len(vocab), hops=2, memory_size=10).error(test)
    assert result.model.error(test) < 0.6 < untrained  # guessing one of six rooms is 5/6 wrong


def test_training_errors():
    batch = small_batch()
    with pytest.raises(ValueError, match="restarts"):
        train_memn2n(batch, batch, 50, restarts=0)
    with pytest.raises(ValueError, match="optimizer"):
        train_memn2n(batch, batch, 50, Recipe(optimizer="rmsprop"), restarts=1)


def test_memories_and_embed_match_read_memory_pieces():
    g = torch.Generator().manual_seed(4)
    model = MemN2N(11, embed_dim=6, hops=2, memory_size=7, init_std=0.5)
    stories, queries, mask = random_story(g)
    memory = model.memories(stories)
    assert memory.shape == (3, 4, 7, 6)
    with torch.no_grad():
        first = torch.stack([naive_sentence(model.embeddings[1], s, True) for s in stories[2]]) + model.temporal[1]
    torch.testing.assert_close(memory[1, 2], first, **TOL)
    u = model.embed(queries)[0, :, None, :]
    o, p = hop(u, memory[0], memory[1], mask[:, None, :])
    torch.testing.assert_close(p[:, 0], model(stories, queries, mask)[1][:, 0], **TOL)


def test_attention_on_facts_against_a_hand_count():
    weights = torch.tensor([[[0.5, 0.5, 0.0], [0.1, 0.9, 0.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    supporting = torch.tensor([[False, True, False], [True, False, False]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    on_facts, uniform = attention_on_facts(weights, supporting, mask)
    torch.testing.assert_close(on_facts, torch.tensor([(0.5 + 1.0) / 2, (0.9 + 0.0) / 2]))
    torch.testing.assert_close(uniform, torch.tensor((1 / 2 + 1 / 3) / 2))
    with pytest.raises(ShapeError, match="weights"):
        attention_on_facts(weights[0], supporting, mask)


def test_stacked_restarts_compute_what_each_model_computes_alone():
    g = torch.Generator().manual_seed(3)
    stories, queries, mask = random_story(g)
    models = [MemN2N(11, embed_dim=6, hops=2, memory_size=7) for _ in range(3)]
    stack = StackedMemN2N(models)
    logits = stack(stories.expand(3, *stories.shape), queries.expand(3, *queries.shape), mask.expand(3, *mask.shape))
    for r, model in enumerate(models):
        torch.testing.assert_close(logits[r], model(stories, queries, mask)[0], **TOL)


def test_clip_per_restart_clips_each_restart_as_if_alone():
    g = torch.Generator().manual_seed(4)
    stacked = [torch.zeros(3, 4, 5, requires_grad=True), torch.zeros(3, 2, requires_grad=True)]
    for p in stacked:
        p.grad = torch.randn(p.shape, generator=g) * torch.tensor([0.1, 5.0, 50.0]).view(-1, *[1] * (p.dim() - 1))
    alone = [[torch.zeros(p.shape[1:], requires_grad=True) for p in stacked] for _ in range(3)]
    for r, params in enumerate(alone):
        for p, q in zip(params, stacked):
            p.grad = q.grad[r].clone()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
    clip_per_restart(stacked, 1.0)
    for r, params in enumerate(alone):
        for p, q in zip(params, stacked):
            torch.testing.assert_close(q.grad[r], p.grad, atol=1e-6, rtol=1e-5)
