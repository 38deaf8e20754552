"""Multi30k: the SHA-256-checked loader, the subword tokenizer, length-bucketed batches and the benchmark's JSON."""

from __future__ import annotations

import gzip
import shutil

import pytest
import torch

from attnbook.data import multi30k
from attnbook.data.files import DataFileError
from attnbook.data.translation import load_multi30k as reexported

needs_data = pytest.mark.skipif(
    multi30k.find_data("multi30k/test_2016_flickr.en.gz", multi30k.SHA256["test_2016_flickr.en.gz"]) is None,
    reason="real Multi30k files not in ATTNBOOK_DATA",
)


@needs_data
def test_splits_have_the_published_sizes_and_are_aligned():
    sizes = {split: len(multi30k.load_multi30k(split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 29000, "val": 1014, "test": 1000}
    de, en = multi30k.load_multi30k("test")[0]
    assert de.startswith("Ein Mann") and en.startswith("A man")
    assert reexported is multi30k.load_multi30k


def test_missing_and_corrupt_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"multi30k/val.de.gz: Multi30k file not found"):
        multi30k.load_multi30k("val")
    (tmp_path / "multi30k").mkdir()
    with gzip.open(tmp_path / "multi30k" / "val.de.gz", "wt") as handle:
        handle.write("Ein Hund.\n")
    with pytest.raises(DataFileError, match=r"val.de.gz: SHA-256 is .* expected f0cba2f9"):
        multi30k.load_multi30k("val")
    with pytest.raises(ValueError, match="split: expected one of"):
        multi30k.load_multi30k("dev")


@needs_data
def test_misaligned_sides_are_reported(tmp_path, monkeypatch):
    source = multi30k.multi30k_file("val.de.gz").parent
    (tmp_path / "multi30k").mkdir()
    for name in ("val.de.gz", "val.en.gz"):
        shutil.copy(source / name, tmp_path / "multi30k" / name)
    monkeypatch.setitem(multi30k.SHA256, "val.en.gz", None)  # accept a shortened English side
    with gzip.open(tmp_path / "multi30k" / "val.en.gz", "wt") as handle:
        handle.write("A dog.\n")
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    with pytest.raises(DataFileError, match="has 1014 lines but .en.gz has 1"):
        multi30k.load_multi30k("val")


SENTENCES = ["Ein Mann fährt Fahrrad.", "A man rides a bike.", "Zwei Hunde spielen im Schnee!",
             "Two dogs play in the snow!", "Eine Frau, die liest.", "A woman, who is reading."] * 20


def test_tokenizer_round_trips_text_and_reserves_the_special_ids():
    tokenizer = multi30k.train_subword_tokenizer(SENTENCES, vocab_size=120, min_frequency=1)
    for i, token in enumerate((multi30k.PAD, multi30k.BOS, multi30k.EOS, multi30k.UNK)):
        assert tokenizer.token_to_id(token) == i
    for sentence in SENTENCES[:6]:
        ids = tokenizer.encode(sentence).ids
        assert tokenizer.decode(ids) == sentence
        assert multi30k.PAD_ID not in ids and multi30k.BOS_ID not in ids


def test_batches_cover_every_pair_once_within_the_token_budget():
    tokenizer = multi30k.train_subword_tokenizer(SENTENCES, vocab_size=120, min_frequency=1)
    pairs = [(SENTENCES[i], SENTENCES[i + 1]) for i in range(0, len(SENTENCES), 2)]
    data = multi30k.encode_pairs(tokenizer, pairs)
    assert (data.tgt[:, 0] == multi30k.BOS_ID).all()
    seen = []
    for src, tgt in data.batches(max_tokens=40, generator=torch.Generator().manual_seed(0)):
        assert tgt.shape[0] * tgt.shape[1] <= 40 or tgt.shape[0] == 1
        assert ((tgt == multi30k.EOS_ID).sum(1) == 1).all() and (src != 0).any(1).all()
        seen += [tuple(row[row != 0].tolist()) for row in tgt]
    assert sorted(seen) == sorted(tuple(row[row != 0].tolist()) for row in data.tgt)


@needs_data
def test_benchmark_ends_with_its_json_line():
    from tests.test_benchmarks import last_json_line

    result = last_json_line(["benchmarks/multi30k.py", "--train-limit", "300", "--test-limit", "5", "--epochs",
                             "1", "--d-model", "32", "--layers", "1", "--ff", "64", "--vocab", "500",
                             "--threads", "1", "--beam", "2"])
    assert set(result) >= {"bleu_greedy", "bleu_beam", "seconds"}
    assert 0.0 <= result["bleu_greedy"] <= 100.0 and 0.0 <= result["bleu_beam"] <= 100.0
    assert result["seconds"] > 0 and result["test_sentences"] == 5
