"""English sentences whose dependency arcs are known by construction: gold syntax without a parser.

A small grammar writes each sentence together with its tree, in the Stanford-dependency labels that Clark et
al. (2019) scored BERT's heads on:

    sentence → NP_subj [PP] verb NP_obj [PP] "."        NP → (det | poss) adj* noun        PP → prep NP

with arcs det(noun → determiner), poss(noun → possessive), amod(noun → adjective), nsubj(verb → subject),
dobj(verb → object), prep(noun or verb → preposition), pobj(preposition → noun), punct(verb → ".") and the
verb as root. Because the grammar built the tree, every arc is right; the sentences are simple, so the
fixed-offset baselines are stronger than on newspaper text. `sentiment_sentences` marks the subject with an
adjective of known polarity (the label) and sometimes the object with a distractor. Chapter 8 uses both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DETERMINERS = ("the", "a", "this", "that", "every")
POSSESSIVES = ("his", "her", "my", "their", "our")
ADJECTIVES = ("old", "small", "young", "quiet", "tired", "enormous", "curious", "ancient", "shiny", "nervous")
POSITIVE = ("kind", "friendly", "cheerful", "gentle", "honest", "brilliant")
NEGATIVE = ("cruel", "rude", "lazy", "nasty", "greedy", "dreadful")
PEOPLE = ("teacher", "farmer", "doctor", "child", "pilot", "neighbour", "saxophonist", "gardener", "dog", "giraffe")
THINGS = ("ball", "letter", "book", "bicycle", "kite", "sandwich", "wheelbarrow", "painting", "lantern", "violin")
PLACES = ("river", "garden", "bridge", "station", "library", "window", "table", "harbour", "fountain", "cathedral")
VERBS = ("saw", "found", "painted", "carried", "watched", "admired", "dropped", "repaired", "borrowed", "described")
PREPOSITIONS = ("near", "behind", "under", "beside", "across", "inside")
WORDS = tuple(sorted({*DETERMINERS, "an", *POSSESSIVES, *ADJECTIVES, *POSITIVE, *NEGATIVE, *PEOPLE, *THINGS,
                      *PLACES, *VERBS, *PREPOSITIONS, "."}))
RELATIONS = ("det", "poss", "amod", "nsubj", "dobj", "prep", "pobj", "punct", "root")


@dataclass
class Sentence:
    """Words and their tree: ``heads[i]`` is the index of word i's head (−1 for the root), ``relations[i]``
    the label of that arc."""

    words: list[str]
    heads: list[int]
    relations: list[str]

    @property
    def arcs(self) -> list[tuple[int, int, str]]:
        """``(dependent, head, relation)`` for every word (the root's head is −1)."""
        return list(zip(range(len(self.words)), self.heads, self.relations))

    @property
    def text(self) -> str:
        return " ".join(self.words[:-1]) + self.words[-1]


class _Builder:
    def __init__(self) -> None:
        self.words: list[str] = []
        self.heads: list[int] = []
        self.relations: list[str] = []

    def add(self, word: str, head: int | None = None, relation: str = "") -> int:
        self.words.append(word)
        self.heads.append(-2 if head is None else head)  # -2: attached later
        self.relations.append(relation)
        return len(self.words) - 1

    def attach(self, index: int, head: int, relation: str) -> None:
        self.heads[index], self.relations[index] = head, relation


def _article(word: str, determiner: str) -> str:
    return "an" if determiner == "a" and (word[0] in "aeiou" or word.startswith("hon")) else determiner


def _noun_phrase(b: _Builder, rng: random.Random, nouns: tuple[str, ...], adjective: str | None,
                 adjective_p: float = 0.5) -> int:
    """Write (det | poss), up to two adjectives, noun; return the noun's index (its own head is attached by the caller)."""
    adjectives = [] if adjective is None else [adjective]
    while len(adjectives) < 2 and rng.random() < adjective_p:  # zero, one or two adjectives
        adjectives.insert(0, rng.choice([a for a in ADJECTIVES if a not in adjectives]))
    noun = rng.choice(nouns)
    use_poss = rng.random() < 0.3
    first_word = adjectives[0] if adjectives else noun
    spec = b.add(rng.choice(POSSESSIVES) if use_poss else _article(first_word, rng.choice(DETERMINERS)))
    modifiers = [b.add(a) for a in adjectives]
    head = b.add(noun)
    b.attach(spec, head, "poss" if use_poss else "det")
    for modifier in modifiers:
        b.attach(modifier, head, "amod")
    return head


def _prepositional(b: _Builder, rng: random.Random, attach_to: int) -> None:
    prep = b.add(rng.choice(PREPOSITIONS), attach_to, "prep")
    noun = _noun_phrase(b, rng, PLACES, None, adjective_p=0.3)
    b.attach(noun, prep, "pobj")


def _sentence(rng: random.Random, subject_adjective: str | None = None,
              object_adjective: str | None = None) -> Sentence:
    b = _Builder()
    subject = _noun_phrase(b, rng, PEOPLE, subject_adjective)
    if rng.random() < 0.3:
        _prepositional(b, rng, subject)
    verb = b.add(rng.choice(VERBS), -1, "root")
    b.attach(subject, verb, "nsubj")
    obj = _noun_phrase(b, rng, THINGS, object_adjective)
    b.attach(obj, verb, "dobj")
    if rng.random() < 0.4:
        _prepositional(b, rng, verb)
    b.add(".", verb, "punct")
    return Sentence(b.words, b.heads, b.relations)


def make_sentences(n: int, seed: int = 0) -> list[Sentence]:
    """``n`` sentences with their gold trees, the same for the same seed."""
    if n < 1:
        raise ValueError(f"n: expected at least one sentence, got {n}")
    rng = random.Random(seed)
    return [_sentence(rng) for _ in range(n)]


def sentiment_sentences(n: int, seed: int = 0, distractor_p: float = 0.5) -> tuple[list[Sentence], list[int]]:
    """Sentences whose label (1 positive, 0 negative) is the polarity of the subject's adjective.

    With probability ``distractor_p`` the object carries an adjective of random polarity too, which the label
    ignores. Balanced classes; returns ``(sentences, labels)``.
    """
    if n < 1:
        raise ValueError(f"n: expected at least one sentence, got {n}")
    rng = random.Random(seed)
    sentences, labels = [], []
    for i in range(n):
        label = i % 2
        subject_adjective = rng.choice(POSITIVE if label else NEGATIVE)
        object_adjective = rng.choice(rng.choice((POSITIVE, NEGATIVE))) if rng.random() < distractor_p else None
        sentences.append(_sentence(rng, subject_adjective, object_adjective))
        labels.append(label)
    order = list(range(n))
    rng.shuffle(order)
    return [sentences[i] for i in order], [labels[i] for i in order]


def cue_index(sentence: Sentence) -> int:
    """Index of the subject's sentiment adjective: the word a label of `sentiment_sentences` depends on."""
    verb = sentence.heads.index(-1)
    subject = next(d for d, h, r in sentence.arcs if h == verb and r == "nsubj")
    return next(d for d, h, r in sentence.arcs
                if h == subject and r == "amod" and sentence.words[d] in POSITIVE + NEGATIVE)
