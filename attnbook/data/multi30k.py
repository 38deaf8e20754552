"""Multi30k (Elliott et al. 2016): German → English image captions, read from ``$ATTNBOOK_DATA/multi30k/``.

Task 1 of Multi30k pairs 29,000 training, 1,014 validation and 1,000 test (Flickr 2016) German captions with
English translations, one sentence a line in gzip text. Every file is checked against its SHA-256 before use.
Used by ``benchmarks/multi30k.py``, which trains the package's Transformer on it and reports BLEU.

Sentences are cut into subwords by a byte-pair-encoding tokenizer (`tokenizers`) trained on the training split
of both languages together: words split at spaces and punctuation, spaces kept as "▁" so that decoding gives the
original text back, with no language-specific detokenizer. Token id 0 is padding, 1 BOS, 2 EOS, 3 unknown.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from attnbook.data.files import DataFileError, data_root, find_data

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
}


def multi30k_file(name: str) -> Path:
    """Path of ``$ATTNBOOK_DATA/multi30k/<name>`` after its SHA-256 check; a clear error if it is missing."""
    if name not in SHA256:
        raise ValueError(f"name: expected one of {sorted(SHA256)}, got {name!r}")
    path = find_data(f"multi30k/{name}", SHA256[name])
    if path is None:
        where = f"{data_root()}/multi30k/{name}" if data_root() else "ATTNBOOK_DATA (unset)"
        raise FileNotFoundError(
            f"{where}: Multi30k file not found. Set ATTNBOOK_DATA to the data directory holding multi30k/ "
            f"(the shared data README lists the files and their SHA-256)."
        )
    return path


def load_multi30k(split: str = "train") -> list[tuple[str, str]]:
    """The ``(german, english)`` sentence pairs of one split: "train", "val" or "test" (Flickr 2016)."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {sorted(SPLITS)}, got {split!r}")
    sides = []
    for lang in ("de", "en"):
        path = multi30k_file(f"{SPLITS[split]}.{lang}.gz")
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            sides.append([line.rstrip("\n") for line in handle])
    if len(sides[0]) != len(sides[1]):
        raise DataFileError(
            f"multi30k/{SPLITS[split]}.de.gz has {len(sides[0])} lines but .en.gz has {len(sides[1])}: "
            "the two sides must be aligned line by line; replace the files with those the data README lists."
        )
    return list(zip(*sides))


def train_subword_tokenizer(sentences: Sequence[str], vocab_size: int = 8000, min_frequency: int = 2):
    """A BPE `tokenizers.Tokenizer` learned from ``sentences``; ``decode(encode(s).ids) == s`` up to spacing."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[PAD, BOS, EOS, UNK], show_progress=False)
    tokenizer.train_from_iterator(sentences, trainer)
    return tokenizer


@dataclass
class SubwordPairs:
    """Token ids of sentence pairs: src ``(N, n_s)`` and tgt ``(N, n_t)`` = BOS … EOS, padded with 0."""

    src: Tensor
    tgt: Tensor

    def __len__(self) -> int:
        return self.src.shape[0]

    def batches(self, max_tokens: int, generator: torch.Generator | None = None):
        """Shuffled batches of sentences of similar length, about ``max_tokens`` target tokens each.

        Sorting by length inside large random pools keeps padding (wasted computation) small.
        """
        lengths = (self.tgt != PAD_ID).sum(1)
        order = torch.randperm(len(self), generator=generator)
        pool = 100 * max(1, max_tokens // int(lengths.float().mean()))
        chunks = []
        for start in range(0, len(order), pool):
            idx = order[start : start + pool]
            idx = idx[lengths[idx].argsort(stable=True)]
            batch: list[int] = []
            for i in idx.tolist():
                if batch and (len(batch) + 1) * int(lengths[batch + [i]].max()) > max_tokens:
                    chunks.append(batch)
                    batch = []
                batch.append(i)
            chunks.append(batch)
        for k in torch.randperm(len(chunks), generator=generator).tolist():
            idx = torch.tensor(chunks[k])
            src, tgt = self.src[idx], self.tgt[idx]
            yield src[:, : int((src != PAD_ID).sum(1).max())], tgt[:, : int((tgt != PAD_ID).sum(1).max())]


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]]) -> SubwordPairs:
    """Encode ``(source, target)`` pairs with a shared tokenizer into padded id tensors."""
    src = [e.ids for e in tokenizer.encode_batch([s for s, _ in pairs])]
    tgt = [[BOS_ID, *e.ids, EOS_ID] for e in tokenizer.encode_batch([t for _, t in pairs])]
    return SubwordPairs(_pad(src), _pad(tgt))


def _pad(sequences: list[list[int]]) -> Tensor:
    out = torch.full((len(sequences), max(len(s) for s in sequences)), PAD_ID, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out
