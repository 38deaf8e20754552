"""Text for BERT pretraining (chapter 4): a corpus, a WordPiece tokenizer, masked-LM masking, sentence pairs.

The corpus is tiny Shakespeare (read from ``$ATTNBOOK_DATA`` and checked against its SHA-256) or, offline, a
generated play-like corpus from a small grammar. Both come as speeches: a speaker and the lines they say.
Token tensors follow HuggingFace's conventions: ``input_ids``, ``token_type_ids`` and ``attention_mask`` of
shape ``(batch, n)``, and masked-LM labels of -100 where no prediction is asked for.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import Tensor

from attnbook.data.files import describe_source, find_data
from attnbook.errors import DTypeError, check_ndim, check_tensor

TINY_SHAKESPEARE = "tinyshakespeare.txt"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
IGNORE_INDEX = -100  # the label of a position that is not predicted (PyTorch's cross-entropy default)


@dataclass
class Corpus:
    """Speeches ``(speaker, [line, ...])`` and one line saying which data they came from."""

    speeches: list[tuple[str, list[str]]]
    source: str
    real: bool
    lines: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = [line for _, speech in self.speeches for line in speech]


# ---------------------------------------------------------------------------------------------------------
# Loading the corpus.


def parse_plays(text: str) -> list[tuple[str, list[str]]]:
    """Split tiny-Shakespeare-style text (``Speaker:`` then lines, blank line between) into speeches."""
    speeches = []
    for block in re.split(r"\n\s*\n", text.strip()):
        rows = [row.strip() for row in block.splitlines() if row.strip()]
        if len(rows) >= 2 and rows[0].endswith(":"):
            speeches.append((rows[0][:-1], rows[1:]))
    return speeches


_NOUNS = [("king", "kings"), ("queen", "queens"), ("lord", "lords"), ("maid", "maids"), ("horse", "horses"),
          ("sword", "swords"), ("crown", "crowns"), ("heart", "hearts"), ("star", "stars"), ("rose", "roses"),
          ("ship", "ships"), ("field", "fields"), ("tower", "towers"), ("letter", "letters"),
          ("friend", "friends"), ("enemy", "enemies"), ("soldier", "soldiers"), ("child", "children"),
          ("ghost", "ghosts"), ("storm", "storms"), ("garden", "gardens"), ("wolf", "wolves")]
_VERBS = [("loves", "love"), ("fears", "fear"), ("seeks", "seek"), ("holds", "hold"), ("keeps", "keep"),
          ("takes", "take"), ("brings", "bring"), ("sees", "see"), ("follows", "follow"), ("hates", "hate"),
          ("guards", "guard"), ("calls", "call")]
_INTRANSITIVE = [("sleeps", "sleep"), ("weeps", "weep"), ("sings", "sing"), ("falls", "fall"),
                 ("waits", "wait"), ("rides", "ride")]
_ADJECTIVES = ["noble", "gentle", "bloody", "fair", "sweet", "cruel", "proud", "old", "young", "dark",
               "bright", "poor", "false", "true"]
_PLACES = ["the castle", "the forest", "the sea", "the court", "the city", "the hill", "the river"]
_SPEAKERS = ["KING", "QUEEN", "NURSE", "FOOL", "FIRST LORD", "SECOND LORD", "PRINCE", "DUKE", "CAPTAIN",
             "MESSENGER"]


def _noun_phrase(rng: random.Random, topic: list[int], plural: bool) -> str:
    noun = _NOUNS[rng.choice(topic)][1 if plural else 0]
    det = rng.choice(["the", "these", "those"] if plural else ["the", "this", "that", "my", "thy"])
    return f"{det} {rng.choice(_ADJECTIVES)} {noun}" if rng.random() < 0.5 else f"{det} {noun}"


def _line(rng: random.Random, topic: list[int]) -> str:
    plural = rng.random() < 0.5
    subject = _noun_phrase(rng, topic, plural)
    kind = rng.random()
    if kind < 0.45:
        verb = rng.choice(_VERBS)[1 if plural else 0]
        words = f"{subject} {verb} {_noun_phrase(rng, topic, rng.random() < 0.5)}"
    elif kind < 0.75:
        verb = rng.choice(_INTRANSITIVE)[1 if plural else 0]
        words = f"{subject} {verb} in {rng.choice(_PLACES)}"
    else:
        verb = rng.choice(_VERBS)[1]
        words = f"why {'do' if plural else 'does'} {subject} {verb} {_noun_phrase(rng, topic, False)}"
    end = "?" if words.startswith("why") else rng.choice([",", ".", ".", "!", ";"])
    return words[0].upper() + words[1:] + end


def generate_corpus(n_speeches: int = 4000, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Play-like speeches from a small grammar with number agreement; each speech keeps to a few nouns."""
    rng = random.Random(seed)
    speeches = []
    for _ in range(n_speeches):
        topic = rng.sample(range(len(_NOUNS)), 4)
        speeches.append((rng.choice(_SPEAKERS), [_line(rng, topic) for _ in range(rng.randint(2, 6))]))
    return speeches


def load_corpus(seed: int = 0, generated: bool = False) -> Corpus:
    """Tiny Shakespeare from ``$ATTNBOOK_DATA`` (SHA-256 checked), else the generated corpus; says which.

    ``generated=True`` asks for the generated corpus even when the real one is there.
    """
    if generated:
        return Corpus(generate_corpus(seed=seed), "data: a generated play-like corpus (chosen by the caller)",
                      real=False)
    path = find_data(TINY_SHAKESPEARE, TINY_SHAKESPEARE_SHA256)
    source = describe_source("tiny Shakespeare", path, "a generated play-like corpus")
    if path is not None:
        return Corpus(parse_plays(path.read_text(encoding="utf-8")), source, real=True)
    return Corpus(generate_corpus(seed=seed), source, real=False)


# ---------------------------------------------------------------------------------------------------------
# Tokenizer and encoding.


def train_tokenizer(texts: list[str], vocab_size: int = 2000) -> Tokenizer:
    """Train a BERT-style WordPiece tokenizer (lower-cased; ``[CLS] A [SEP] B [SEP]`` templates).

    The special tokens take ids 0-4 in the order of `SPECIAL_TOKENS`, so ``[PAD]`` is 0 as in BERT. The same
    texts always give the same tokenizer: the ``tokenizers`` trainer numbers the ``##`` pieces of single
    characters in hash-map order, which changes from run to run and breaks ties between equally frequent merges
    differently (huggingface/tokenizers#1794), so we hand it those pieces, sorted, before it starts.
    """
    if not texts:
        raise ValueError("texts: expected at least one text to train the tokenizer on, got none")
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    inner = {char for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
             for char in word[1:]}
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                        special_tokens=[*SPECIAL_TOKENS, *(f"##{char}" for char in sorted(inner))])
    scratch = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    scratch.normalizer, scratch.pre_tokenizer = normalizer, pre_tokenizer
    scratch.train_from_iterator(texts, trainer)
    # the pieces were "special" only for the trainer: a fresh tokenizer keeps the vocabulary, not that role
    tokenizer = Tokenizer(models.WordPiece(scratch.get_vocab(with_added_tokens=False), unk_token="[UNK]"))
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tokenizer


def encode(
    tokenizer: Tokenizer, texts: list[str], pairs: list[str] | None = None, max_length: int = 64
) -> dict[str, Tensor]:
    """Encode texts (or text pairs) into padded ``(batch, n)`` tensors, HuggingFace style.

    Returns ``input_ids``, ``token_type_ids`` (0 for segment A, 1 for B), ``attention_mask`` (1 token, 0 pad)
    and ``special_tokens_mask`` (1 on [CLS]/[SEP]/[PAD], the positions masking must never choose).
    """
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"pairs: expected {len(texts)} second segments, one per text, got {len(pairs)}")
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    batch = tokenizer.encode_batch(list(zip(texts, pairs)) if pairs is not None else texts)
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def stack(attribute: str) -> Tensor:
        return torch.tensor([getattr(e, attribute) for e in batch], dtype=torch.long)

    return {"input_ids": stack("ids"), "token_type_ids": stack("type_ids"),
            "attention_mask": stack("attention_mask"), "special_tokens_mask": stack("special_tokens_mask")}


# ---------------------------------------------------------------------------------------------------------
# Masked-LM masking (Devlin et al. 2019, section 3.1).


def mask_tokens(
    input_ids: Tensor,
    special_tokens_mask: Tensor,
    mask_id: int,
    vocab_size: int,
    num_special: int = len(SPECIAL_TOKENS),
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Choose ``probability`` of the ordinary tokens; of those, 80% → [MASK], 10% → a random token, 10% kept.

    input_ids and special_tokens_mask ``(batch, n)`` → masked inputs ``(batch, n)`` and labels ``(batch, n)``
    holding the original id where a prediction is asked for and -100 elsewhere. Special tokens and padding
    (``special_tokens_mask`` 1) are never chosen. Random replacements are ordinary tokens (ids ≥ num_special).
    The model cannot tell a kept token from an unchosen one, so it must model every position, which is why
    BERT keeps 10% unchanged; the random 10% stops it trusting the visible token blindly.
    """
    check_tensor("input_ids", input_ids)
    check_tensor("special_tokens_mask", special_tokens_mask)
    check_ndim("input_ids", input_ids, 2, "(batch, n)")
    if special_tokens_mask.shape != input_ids.shape:
        raise ValueError(f"special_tokens_mask: expected shape {tuple(input_ids.shape)} (input_ids'), "
                         f"got {tuple(special_tokens_mask.shape)}")
    if input_ids.dtype != torch.long:
        raise DTypeError(f"input_ids: expected dtype torch.long, got {input_ids.dtype}")
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability: expected a value in (0, 1), got {probability}")
    if not 0 <= num_special < vocab_size:
        raise ValueError(f"num_special: expected 0 <= num_special < vocab_size={vocab_size}, got {num_special}")

    def draw(shape: torch.Size) -> Tensor:
        return torch.rand(shape, generator=generator)

    ordinary = special_tokens_mask == 0
    chosen = (draw(input_ids.shape) < probability) & ordinary
    fate = draw(input_ids.shape)  # one uniform number decides each chosen token's fate
    to_mask = chosen & (fate < 0.8)
    to_random = chosen & (fate >= 0.8) & (fate < 0.9)
    random_ids = torch.randint(num_special, vocab_size, input_ids.shape, generator=generator)
    inputs = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    inputs = torch.where(to_random, random_ids, inputs)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return inputs, labels


# ---------------------------------------------------------------------------------------------------------
# Next-sentence pairs and the downstream tasks.


def next_sentence_pairs(
    speeches: list[tuple[str, list[str]]], n: int, generator: torch.Generator | None = None
) -> tuple[list[str], list[str], Tensor]:
    """``n`` line pairs ``(A, B)`` with labels: 1 (half of them) if B follows A in a speech, 0 if B is random.

    The random B is drawn from a different speech, so a 0 is never a true continuation.
    """
    rng = random.Random(int(torch.randint(2**31, (1,), generator=generator)))
    starts = [(s, i) for s, (_, lines) in enumerate(speeches) for i in range(len(lines) - 1)]
    if not starts or len(speeches) < 2:
        raise ValueError("speeches: expected at least two speeches and one with two lines")
    labels = [1] * (n // 2) + [0] * (n - n // 2)
    rng.shuffle(labels)
    first, second = [], []
    for label in labels:
        s, i = rng.choice(starts)
        first.append(speeches[s][1][i])
        if label:
            second.append(speeches[s][1][i + 1])
        else:
            other = rng.choice([t for t in rng.sample(range(len(speeches)), 2) if t != s])
            second.append(rng.choice(speeches[other][1]))
    return first, second, torch.tensor(labels)


SCRAMBLES = ("shuffle", "reverse")


def scrambled_lines(
    lines: list[str], n: int, min_words: int = 5, scramble: str = "shuffle",
    generator: torch.Generator | None = None,
) -> tuple[list[str], Tensor]:
    """A downstream task: is a line in its original word order (label 1) or scrambled (0)?

    ``scramble="shuffle"`` permutes the words at random; ``"reverse"`` reads them backwards, which leaves each
    pair of neighbours together, so only the direction of the language gives it away. Punctuation is removed
    and text lower-cased, so word order is the only clue; half the lines are scrambled, always into an order
    different from the original (lines that read the same backwards are never drawn for ``"reverse"``).
    """
    if scramble not in SCRAMBLES:
        raise ValueError(f"scramble: expected one of {SCRAMBLES}, got {scramble!r}")
    rng = random.Random(int(torch.randint(2**31, (1,), generator=generator)))
    pool = [w for w in (re.sub(r"[^\w' ]", " ", line).lower().split() for line in lines)
            if len(w) >= min_words and (scramble == "shuffle" or w != w[::-1])]
    if not pool:
        raise ValueError(f"lines: expected lines with at least {min_words} words, found none")
    labels = [1] * (n // 2) + [0] * (n - n // 2)
    rng.shuffle(labels)
    texts = []
    for label in labels:
        words = list(rng.choice(pool))
        if not label and scramble == "reverse":
            words.reverse()
        elif not label:
            original = list(words)
            while words == original:
                rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, torch.tensor(labels)


def mirror_task(
    n: int, length: int = 8, vocab_size: int = 16, num_special: int = len(SPECIAL_TOKENS),
    mask_id: int = SPECIAL_TOKENS.index("[MASK]"), generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Fill in blanks whose answer lies to the right: ``[MASK]×k  x_k … x_1`` → ``x_1 … x_k``.

    Each sequence is ``length`` random ordinary tokens followed by their mirror image; the first half is
    hidden behind [MASK] and must be recovered from the second half. Returns input_ids ``(n, 2·length)`` and
    labels ``(n, 2·length)`` (-100 on the visible half). A left-to-right (causal) reader sees nothing useful.
    """
    if vocab_size <= num_special:
        raise ValueError(f"vocab_size: expected more than num_special={num_special} ids, got {vocab_size}")
    tokens = torch.randint(num_special, vocab_size, (n, length), generator=generator)
    sequence = torch.cat([tokens, tokens.flip(1)], dim=1)
    inputs = sequence.clone()
    inputs[:, :length] = mask_id
    labels = torch.full_like(sequence, IGNORE_INDEX)
    labels[:, :length] = sequence[:, :length]
    return inputs, labels
