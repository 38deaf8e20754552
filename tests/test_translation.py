"""Number-word translation data: morphemes, targets, disjoint splits, vocabularies and errors."""

import random

import pytest
import torch
from num2words import num2words

from attnbook.data.translation import (BOS_ID, EOS_ID, PAD_ID, Vocab, make_translation, sample_numbers,
                                       source_tokens, split_morphemes, target_tokens)


def test_german_units_come_before_tens():
    assert source_tokens(21) == ["ein", "und", "zwanzig"]
    assert source_tokens(17) == ["sieb", "zehn"]
    assert source_tokens(101) == ["ein", "hundert", "eins"]
    assert source_tokens(345678) == ["drei", "hundert", "fünf", "und", "vierzig", "tausend", "sechs", "hundert",
                                     "acht", "und", "siebzig"]


def test_morphemes_rebuild_every_sampled_word():
    for n in sample_numbers(3000, random.Random(1)):
        assert "".join(source_tokens(n)) == num2words(n, lang="de")


def test_targets():
    assert target_tokens(4021) == ["4", "0", "2", "1"]
    assert target_tokens(4021, "en") == ["four", "thousand", "and", "twenty", "one"]


def test_clear_errors():
    with pytest.raises(ValueError, match=r"lang: expected one of \['de'\], got 'xx'"):
        source_tokens(5, lang="xx")
    with pytest.raises(ValueError, match="target"):
        target_tokens(5, target="roman")
    with pytest.raises(ValueError, match="number"):
        source_tokens(0)
    with pytest.raises(ValueError, match="number"):
        target_tokens(1_000_000)
    with pytest.raises(ValueError, match="cannot split 'einsxyz'"):
        split_morphemes("einsxyz")
    with pytest.raises(ValueError, match="lang"):
        make_translation(10, 10, lang="fr")
    with pytest.raises(KeyError, match="not in the vocabulary"):
        Vocab(["a"]).encode(["b"])
    with pytest.raises(ValueError, match="count"):
        sample_numbers(20, random.Random(0), max_digits=1)


def test_sample_numbers_spreads_digit_counts():
    numbers = sample_numbers(2000, random.Random(0))
    assert len(set(numbers)) == 2000
    counts = torch.bincount(torch.tensor([len(str(n)) for n in numbers]))[1:]
    assert counts[0] == 9 and counts[1] > 80  # only 9 one-digit and 90 two-digit numbers exist
    assert counts[2:].min() > 250  # the rest: about a sixth each


def test_split_is_disjoint_and_encodes_round_trip():
    task = make_translation(300, 100, seed=3)
    assert not set(task.train.numbers) & set(task.test.numbers)
    assert task.train.src.shape[0] == 300 and task.test.tgt.shape[0] == 100
    assert torch.all(task.train.tgt[:, 0] == BOS_ID)
    for split in (task.train, task.test):
        for n, src, tgt in zip(split.numbers[:50], split.src, split.tgt):
            assert task.src_vocab.decode(src.tolist()) == source_tokens(n)
            assert task.tgt_vocab.decode(tgt.tolist()) == list(str(n))
            length = len(source_tokens(n))
            assert torch.all(src[length:] == PAD_ID) and (tgt == EOS_ID).sum() == 1
    assert_lengths = task.test.src_lengths
    assert int(assert_lengths.max()) == task.test.src.shape[1]


def test_batches_cover_the_split_once():
    task = make_translation(50, 10, seed=0)
    seen = []
    for src, tgt in task.train.batches(16, torch.Generator().manual_seed(0)):
        assert src.shape[0] == tgt.shape[0] <= 16
        assert (src[:, -1] != PAD_ID).any()  # trimmed to the longest in the batch
        seen += [tuple(task.tgt_vocab.decode(t.tolist())) for t in tgt]
    assert sorted(seen) == sorted(tuple(str(n)) for n in task.train.numbers)
