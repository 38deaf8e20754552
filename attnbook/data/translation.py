"""Number-word translation for chapter 3, generated offline with ``num2words``: German words → digits (or English).

German says the units before the tens — 21 is "einundzwanzig", one-and-twenty — so a translator into digits
must read the source out of order, and an attention model's alignment shows the swap. German words are split
into morphemes ("ein und zwanzig") so each source token means one thing. Numbers are sampled so every digit
count is equally common, and the test numbers never appear in training. Token id 0 is padding, 1 BOS, 2 EOS.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from num2words import num2words
from torch import Tensor

from attnbook.core import padding_mask

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2

# German number morphemes, matched longest first ("sechzig" before "sechs" before "sech").
GERMAN_MORPHEMES = (
    "null", "eins", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "elf",
    "zwölf", "sech", "sieb", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig",
    "neunzig", "und", "hundert", "tausend",
)
SOURCE_LANGUAGES = ("de",)
TARGETS = ("digits", "en")
MAX_NUMBER = 999_999


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def split_morphemes(word: str, morphemes: Sequence[str] = GERMAN_MORPHEMES) -> list[str]:
    """Split a compound number word into morphemes by greedy longest match; raise if something is left over."""
    ordered = sorted(morphemes, key=len, reverse=True)
    pieces, i = [], 0
    while i < len(word):
        match = next((m for m in ordered if word.startswith(m, i)), None)
        if match is None:
            raise ValueError(f"word: cannot split {word!r} into number morphemes at {word[i:]!r}")
        pieces.append(match)
        i += len(match)
    return pieces


def source_tokens(number: int, lang: str = "de") -> list[str]:
    """The number written out in ``lang`` as a list of morphemes, e.g. 21 → ["ein", "und", "zwanzig"]."""
    _check_choice("lang", lang, SOURCE_LANGUAGES)
    _check_number(number)
    return split_morphemes(num2words(number, lang=lang))


def target_tokens(number: int, target: str = "digits") -> list[str]:
    """The number as digit tokens (21 → ["2", "1"]) or as English words (21 → ["twenty", "one"])."""
    _check_choice("target", target, TARGETS)
    _check_number(number)
    if target == "digits":
        return list(str(number))
    return num2words(number, lang="en").replace("-", " ").replace(",", "").split()


def _check_number(number: int) -> None:
    if not isinstance(number, int) or not 1 <= number <= MAX_NUMBER:
        raise ValueError(f"number: expected an integer in [1, {MAX_NUMBER}], got {number!r}")


class Vocab:
    """Token ↔ id, with the specials first (id 0 padding, 1 BOS, 2 EOS)."""

    def __init__(self, tokens: Sequence[str]):
        self.itos = list(SPECIALS) + sorted(set(tokens) - set(SPECIALS))
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        unknown = [t for t in tokens if t not in self.stoi]
        if unknown:
            raise KeyError(f"tokens: {unknown} are not in the vocabulary of {len(self)} tokens")
        return [self.stoi[t] for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Ids to tokens, stopping at EOS and skipping BOS and padding."""
        out = []
        for i in ids:
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                out.append(self.itos[i])
        return out


def sample_numbers(count: int, rng: random.Random, max_digits: int = 6) -> list[int]:
    """``count`` distinct numbers whose digit counts are uniform over 1..``max_digits`` (as far as they exist)."""
    if not 1 <= max_digits <= 6:
        raise ValueError(f"max_digits: expected 1..6, got {max_digits}")
    capacity = sum(min(count, 9 * 10 ** (d - 1)) for d in range(1, max_digits + 1))
    if count > capacity:
        raise ValueError(f"count: at most {capacity} distinct numbers can be drawn this way, got {count}")
    chosen: set[int] = set()
    while len(chosen) < count:
        digits = rng.randint(1, max_digits)
        chosen.add(rng.randint(10 ** (digits - 1), 10**digits - 1))
    return sorted(chosen, key=lambda n: rng.random())


@dataclass
class TranslationSplit:
    """Padded id tensors for one split: src ``(N, n_s)``, tgt ``(N, n_t + 2)`` with BOS … EOS, the numbers."""

    numbers: list[int]
    src: Tensor
    tgt: Tensor

    @property
    def src_lengths(self) -> Tensor:
        return (self.src != PAD_ID).sum(1)

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """Shuffled ``(src, tgt)`` mini-batches, trimmed to the longest sequence in each."""
        order = torch.randperm(len(self.numbers), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            src, tgt = self.src[idx], self.tgt[idx]
            yield src[:, : int((src != PAD_ID).sum(1).max())], tgt[:, : int((tgt != PAD_ID).sum(1).max())]


@dataclass
class NumberTranslation:
    """A number-word translation task: vocabularies and disjoint train / test splits."""

    src_vocab: Vocab
    tgt_vocab: Vocab
    train: TranslationSplit
    test: TranslationSplit
    lang: str
    target: str


def _pad(sequences: list[list[int]]) -> Tensor:
    lengths = torch.tensor([len(s) for s in sequences])
    out = torch.full((len(sequences), int(lengths.max())), PAD_ID, dtype=torch.long)
    out[padding_mask(lengths)] = torch.tensor([i for s in sequences for i in s])
    return out


def make_translation(n_train: int = 6000, n_test: int = 1000, lang: str = "de", target: str = "digits",
                     seed: int = 0, max_digits: int = 6) -> NumberTranslation:
    """Generate the task: ``n_train`` + ``n_test`` distinct numbers, split so no test number is trained on."""
    _check_choice("lang", lang, SOURCE_LANGUAGES)
    _check_choice("target", target, TARGETS)
    numbers = sample_numbers(n_train + n_test, random.Random(seed), max_digits)
    train_numbers, test_numbers = numbers[:n_train], numbers[n_train:]
    src_vocab = Vocab(GERMAN_MORPHEMES)
    tgt_tokens = [t for n in numbers for t in target_tokens(n, target)]
    tgt_vocab = Vocab(list("0123456789") if target == "digits" else tgt_tokens)

    def split(nums: list[int]) -> TranslationSplit:
        src = _pad([src_vocab.encode(source_tokens(n, lang)) for n in nums])
        tgt = _pad([[BOS_ID, *tgt_vocab.encode(target_tokens(n, target)), EOS_ID] for n in nums])
        return TranslationSplit(nums, src, tgt)

    return NumberTranslation(src_vocab, tgt_vocab, split(train_numbers), split(test_numbers), lang, target)


# Multi30k, the real translation task of the Transformer benchmark, lives in its own module.
from attnbook.data.multi30k import load_multi30k  # noqa: E402  (re-exported: the real data of this task)
