"""Tests of the pretraining data: corpus, tokenizer, masked-LM masking statistics, next-sentence pairs."""

import math
import re

import pytest
import torch

from attnbook.data import text
from attnbook.data.files import DataFileError
from attnbook.data.text import (
    IGNORE_INDEX,
    SPECIAL_TOKENS,
    encode,
    generate_corpus,
    load_corpus,
    mask_tokens,
    mirror_task,
    next_sentence_pairs,
    parse_plays,
    scrambled_lines,
    train_tokenizer,
)
from attnbook.errors import DTypeError


@pytest.fixture(scope="module")
def speeches():
    return generate_corpus(n_speeches=300, seed=1)


@pytest.fixture(scope="module")
def tokenizer(speeches):
    return train_tokenizer([line for _, lines in speeches for line in lines], vocab_size=300)


def test_parse_plays_splits_speakers_and_lines():
    speeches = parse_plays("First Citizen:\nBefore we proceed,\nhear me speak.\n\nAll:\nSpeak, speak.\n")
    assert speeches == [("First Citizen", ["Before we proceed,", "hear me speak."]), ("All", ["Speak, speak."])]


def test_generated_corpus_is_deterministic_and_agrees_in_number(speeches):
    assert generate_corpus(n_speeches=300, seed=1) == speeches
    assert generate_corpus(n_speeches=300, seed=2) != speeches
    lines = [line for _, lines in speeches for line in lines]
    assert all(2 <= len(lines) <= 6 for _, lines in speeches)
    # the grammar's agreement: a plural determiner is never followed by a singular verb form
    assert not any(line.lower().startswith("these ") and line.split()[1] == "king" for line in lines)



def test_tokenizer_is_the_same_every_time(speeches, tokenizer):
    # the library's trainer numbers "##" pieces in hash-map order (huggingface/tokenizers#1794): ten trainings
    # on this corpus disagree (in ids and in the tokens kept) without the sorted pieces handed to it
    texts = [line for _, lines in speeches for line in lines]
    vocab = tokenizer.get_vocab()
    assert all(train_tokenizer(texts, vocab_size=300).get_vocab() == vocab for _ in range(10))
    assert len(vocab) <= 300 and tokenizer.get_added_tokens_decoder().keys() == set(range(len(SPECIAL_TOKENS)))
    assert tokenizer.decode(tokenizer.encode("why these kings").ids) == "why these kings"


def test_load_corpus_falls_back_offline(monkeypatch):
    monkeypatch.delenv("ATTNBOOK_DATA", raising=False)
    corpus = load_corpus()
    assert not corpus.real and "generated" in corpus.source
    assert len(corpus.lines) == sum(len(lines) for _, lines in corpus.speeches)


def test_load_corpus_reads_and_checks_real_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    (tmp_path / text.TINY_SHAKESPEARE).write_text("A:\nnot the real file\n")
    with pytest.raises(DataFileError, match="SHA-256"):
        load_corpus()
    (tmp_path / text.TINY_SHAKESPEARE).unlink()
    assert not load_corpus().real
    assert load_corpus(generated=True).speeches == generate_corpus()


def test_tokenizer_special_ids_and_pair_template(tokenizer):
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    batch = encode(tokenizer, ["The king sleeps.", "Why do the lords fear the crown?"], ["My heart", "The sea"])
    ids, types, mask, special = (batch[k] for k in ("input_ids", "token_type_ids", "attention_mask",
                                                    "special_tokens_mask"))
    assert ids.shape == types.shape == mask.shape == special.shape and ids.dtype == torch.long
    assert (ids[:, 0] == tokenizer.token_to_id("[CLS]")).all()
    assert ((ids == tokenizer.token_to_id("[SEP]")).sum(1) == 2).all()
    assert ((ids == 0) == (mask == 0)).all()  # [PAD] exactly where the attention mask is 0
    assert (special[mask == 0] == 1).all()
    first_sep = (ids[0] == tokenizer.token_to_id("[SEP]")).nonzero()[0, 0]
    assert (types[0, : first_sep + 1] == 0).all() and types[0, first_sep + 1] == 1
    assert tokenizer.decode(encode(tokenizer, ["the king sleeps"])["input_ids"][0].tolist()) == "the king sleeps"


def test_encode_truncates_and_checks_pairs(tokenizer):
    assert encode(tokenizer, ["the king " * 40], max_length=10)["input_ids"].shape == (1, 10)
    with pytest.raises(ValueError, match="pairs"):
        encode(tokenizer, ["a", "b"], ["c"])


def test_tokenizer_needs_texts():
    with pytest.raises(ValueError, match="texts"):
        train_tokenizer([])


def _sigma(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def test_masking_statistics_on_a_large_sample():
    """15% chosen; of those 80% [MASK], 10% random, 10% unchanged; each within 5 binomial sigmas."""
    generator = torch.Generator().manual_seed(0)
    vocab, mask_id, num_special = 1000, 4, 5
    ids = torch.randint(num_special, vocab, (400, 250), generator=generator)
    special = torch.zeros_like(ids)
    special[:, 0] = special[:, -40:] = 1  # a [CLS] and a padded tail
    ids[:, 0], ids[:, -40:] = 2, 0
    inputs, labels = mask_tokens(ids, special, mask_id, vocab, generator=generator)
    chosen = labels != IGNORE_INDEX
    n_ordinary = int((special == 0).sum())
    rate = chosen.sum().item() / n_ordinary
    assert abs(rate - 0.15) < 5 * _sigma(0.15, n_ordinary)
    assert not chosen[special == 1].any(), "special tokens and padding must never be chosen"
    assert (labels[chosen] == ids[chosen]).all() and (inputs[~chosen] == ids[~chosen]).all()
    n = int(chosen.sum())
    masked = (inputs[chosen] == mask_id).float().mean().item()
    unchanged = (inputs[chosen] == ids[chosen]).float().mean().item()
    randomised = 1 - masked - unchanged
    # a random replacement equals the original with probability 1 / (vocab - num_special)
    hit = 0.1 / (vocab - num_special)
    assert abs(masked - 0.8) < 5 * _sigma(0.8, n)
    assert abs(unchanged - (0.1 + hit)) < 5 * _sigma(0.1, n)
    assert abs(randomised - (0.1 - hit)) < 5 * _sigma(0.1, n)
    replaced = inputs[chosen & (inputs != mask_id) & (inputs != ids)]
    assert (replaced >= num_special).all() and (replaced < vocab).all()
    # the random replacements spread over the ordinary vocabulary (not one id)
    assert replaced.unique().numel() > 0.5 * min(replaced.numel(), vocab - num_special)


def test_masking_is_reproducible_with_a_generator():
    ids = torch.randint(5, 50, (8, 30))
    special = torch.zeros_like(ids)
    first = mask_tokens(ids, special, 4, 50, generator=torch.Generator().manual_seed(3))
    second = mask_tokens(ids, special, 4, 50, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_masking_errors():
    ids = torch.randint(5, 50, (2, 6))
    with pytest.raises(ValueError, match="special_tokens_mask"):
        mask_tokens(ids, torch.zeros(2, 5, dtype=torch.long), 4, 50)
    with pytest.raises(ValueError, match="input_ids"):
        mask_tokens(ids[0], torch.zeros(6, dtype=torch.long), 4, 50)
    with pytest.raises(DTypeError, match="input_ids"):
        mask_tokens(ids.float(), torch.zeros(2, 6), 4, 50)
    with pytest.raises(ValueError, match="probability"):
        mask_tokens(ids, torch.zeros_like(ids), 4, 50, probability=1.5)
    with pytest.raises(ValueError, match="num_special"):
        mask_tokens(ids, torch.zeros_like(ids), 4, 50, num_special=50)


def test_next_sentence_pairs_half_true_half_random(speeches):
    first, second, labels = next_sentence_pairs(speeches, 1001, torch.Generator().manual_seed(0))
    assert len(first) == len(second) == labels.numel() == 1001 and labels.sum() == 500
    follows = {(a, b) for _, lines in speeches for a, b in zip(lines, lines[1:])}
    true_pairs = [(a, b) in follows for a, b, label in zip(first, second, labels.tolist()) if label]
    random_pairs = [(a, b) in follows for a, b, label in zip(first, second, labels.tolist()) if not label]
    assert all(true_pairs)
    assert sum(random_pairs) < 0.02 * len(random_pairs), "a random second line is rarely a true continuation"
    assert 0.3 < labels[:500].float().mean() < 0.7, "labels must be shuffled, not sorted"


def test_next_sentence_pairs_need_speeches():
    with pytest.raises(ValueError, match="speeches"):
        next_sentence_pairs([("A", ["one line"])], 4)


def test_scrambled_lines_keep_words_change_order(speeches):
    lines = [line for _, lines in speeches for line in lines]
    texts, labels = scrambled_lines(lines, 400, generator=torch.Generator().manual_seed(0))
    assert len(texts) == 400 and labels.sum() == 200
    originals = {" ".join(line.lower().translate(str.maketrans(",.!?;", "     ")).split()) for line in lines}
    bags = {tuple(sorted(o.split())) for o in originals}
    assert all(ch.isalnum() or ch in " '" for sentence in texts for ch in sentence)
    assert all(t in originals for t, label in zip(texts, labels.tolist()) if label)
    shuffled = [t for t, label in zip(texts, labels.tolist()) if not label]
    assert all(tuple(sorted(t.split())) in bags for t in shuffled)
    assert sum(t in originals for t in shuffled) < 0.05 * len(shuffled)
    with pytest.raises(ValueError, match="lines"):
        scrambled_lines(["too short"], 4)


def test_reversed_lines_read_backwards(speeches):
    lines = [line for _, lines in speeches for line in lines]
    texts, labels = scrambled_lines(lines, 300, scramble="reverse", generator=torch.Generator().manual_seed(1))
    originals = {" ".join(re.sub(r"[^\w' ]", " ", line).lower().split()) for line in lines}
    assert labels.sum() == 150
    for text, label in zip(texts, labels.tolist()):
        forwards = text if label else " ".join(reversed(text.split()))
        assert forwards in originals
        assert label or text != forwards, "a reversed line differs from its original"
    with pytest.raises(ValueError, match="scramble"):
        scrambled_lines(lines, 4, scramble="sort")


def test_mirror_task_answers_lie_to_the_right():
    inputs, labels = mirror_task(50, length=6, vocab_size=20, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == labels.shape == (50, 12)
    assert (inputs[:, :6] == SPECIAL_TOKENS.index("[MASK]")).all()
    assert torch.equal(labels[:, :6], inputs[:, 6:].flip(1))
    assert (labels[:, 6:] == IGNORE_INDEX).all()
    assert inputs[:, 6:].min() >= len(SPECIAL_TOKENS) and inputs.max() < 20
    with pytest.raises(ValueError, match="vocab_size"):
        mirror_task(4, vocab_size=5)
