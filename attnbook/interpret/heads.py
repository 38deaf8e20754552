"""What single heads attend to: pattern shares and dependency-arc accuracy (Clark et al. 2019).

* `attention_share`: for every layer and head, the mean weight that a query puts on chosen keys — the previous
  or next token (`offset_keys`), [CLS] or [SEP] (a ``(batch, n)`` key mask), other pieces of the same word
  (`same_word_keys`).
* `word_attention` turns a token-level map into a word-level one as Clark et al. did for WordPiece: attention
  *to* a split word is the sum over its pieces, attention *from* it the mean over its pieces.
* `arc_accuracy`: how often a head's most-attended word is the gold syntactic head (``direction="dependent"``:
  the dependent attends) or a gold dependent (``"head"``: the head word attends); `offset_accuracy` is the same
  score for the baseline that always predicts the word at one fixed offset.

Arcs are ``(dependent, head, relation)`` triples of word indices, as `attnbook.data.syntax` writes them.
Chapter 8 measures MiniLM's heads with these.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attnbook.errors import ShapeError, check_tensor
from attnbook.interpret.rollout import check_attentions

Arc = tuple[int, int, str]
DIRECTIONS = ("dependent", "head")


def offset_keys(n: int, offset: int, batch: int = 1) -> Tensor:
    """``(batch, n, n)`` boolean: query i selects key i + offset (offset −1: the previous token)."""
    index = torch.arange(n)
    return ((index[:, None] + offset) == index[None, :]).expand(batch, n, n)


def same_word_keys(word_ids: Tensor) -> Tensor:
    """``(batch, n, n)`` boolean: the other pieces of the query's own word (word_ids < 0 for special tokens)."""
    check_tensor("word_ids", word_ids)
    if word_ids.dim() != 2:
        raise ShapeError(f"word_ids: expected (batch, n), got {tuple(word_ids.shape)}")
    same = (word_ids[:, :, None] == word_ids[:, None, :]) & (word_ids[:, :, None] >= 0)
    return same & ~torch.eye(word_ids.shape[1], dtype=torch.bool)


def attention_share(attentions: Sequence[Tensor], keys: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Mean attention on the selected keys, per layer and head: ``(layers, heads)``.

    keys: boolean ``(batch, n)`` (the same keys for every query) or ``(batch, n, n)`` (keys per query).
    The mean runs over real queries (``attention_mask`` ``(batch, n)``, 1 = token) that have a selected key.
    """
    layers = check_attentions(attentions)
    batch, _, n, _ = layers[0].shape
    keys = check_tensor("keys", keys).bool()
    if tuple(keys.shape) == (batch, n):
        keys = keys[:, None, :].expand(batch, n, n)
    if tuple(keys.shape) != (batch, n, n):
        raise ShapeError(f"keys: expected (batch, n) = {(batch, n)} or (batch, n, n), got {tuple(keys.shape)}")
    real = torch.ones(batch, n, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if tuple(real.shape) != (batch, n):
        raise ShapeError(f"attention_mask: expected (batch, n) = {(batch, n)}, got {tuple(real.shape)}")
    queries = (real & keys.any(-1)).to(layers[0].dtype)  # (batch, n)
    weights = queries / queries.sum().clamp_min(1)
    stacked = torch.stack(layers)  # (layers, batch, heads, n, n)
    on_keys = (stacked * keys[None, :, None].to(stacked.dtype)).sum(-1)  # (layers, batch, heads, n)
    return torch.einsum("lbhq,bq->lh", on_keys, weights)


def word_attention(attention: Tensor, word_ids: Sequence[int | None]) -> Tensor:
    """Token map ``(..., n, n)`` → word map ``(..., words, words)``: sum over the pieces of the key word, mean
    over the pieces of the query word; tokens of no word (``None`` or < 0: [CLS], [SEP]) are dropped."""
    check_tensor("attention", attention)
    if attention.shape[-1] != len(word_ids) or attention.shape[-2] != len(word_ids):
        raise ShapeError(f"word_ids: expected one entry per token, n={attention.shape[-1]}, got {len(word_ids)}")
    ids = torch.tensor([-1 if w is None else w for w in word_ids])
    words = int(ids.max()) + 1
    if words < 1:
        raise ValueError("word_ids: no token belongs to a word")
    member = (ids[None, :] == torch.arange(words)[:, None]).to(attention.dtype)  # (words, n)
    to_words = attention @ member.T  # (..., n, words): sum over a word's pieces
    from_words = member @ to_words / member.sum(1, keepdim=True)  # mean over the query word's pieces
    return from_words


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")


def _gold(arcs: Sequence[Arc], relation: str, direction: str) -> list[tuple[int, set[int]]]:
    """(source word, gold targets) for each arc of the relation, read in the given direction."""
    pairs = [(d, h) for d, h, r in arcs if r == relation and h >= 0]
    if direction == "dependent":
        return [(d, {h}) for d, h in pairs]
    heads = sorted({h for _, h in pairs})
    return [(h, {d for d, hh in pairs if hh == h}) for h in heads]


def arc_accuracy(word_attentions: Sequence[Tensor], arcs: Sequence[Sequence[Arc]], relation: str,
                 direction: str = "dependent") -> Tensor:
    """Share of the relation's arcs whose source word attends most to a gold target: ``(layers, heads)``.

    word_attentions: one ``(layers, heads, words, words)`` map per sentence (a word never predicts itself);
    arcs: the sentences' ``(dependent, head, relation)`` triples. Raises if the relation never occurs.
    """
    _check_direction(direction)
    if len(word_attentions) != len(arcs):
        raise ValueError(f"arcs: expected one list per sentence ({len(word_attentions)}), got {len(arcs)}")
    hits, total = None, 0
    for maps, sentence in zip(word_attentions, arcs):
        gold = _gold(sentence, relation, direction)
        if not gold:
            continue
        words = maps.shape[-1]
        masked = maps.masked_fill(torch.eye(words, dtype=torch.bool), float("-inf"))
        for source, targets in gold:
            predicted = masked[..., source, :].argmax(-1)  # (layers, heads)
            hit = torch.zeros_like(predicted, dtype=torch.float)
            for target in targets:
                hit = torch.maximum(hit, (predicted == target).float())
            hits = hit if hits is None else hits + hit
            total += 1
    if total == 0:
        raise ValueError(f"relation: no arc labelled {relation!r} in these sentences")
    return hits / total


def offset_accuracy(arcs: Sequence[Sequence[Arc]], lengths: Sequence[int], relation: str,
                    direction: str = "dependent", offsets: Sequence[int] = range(-5, 6)) -> dict[int, float]:
    """Accuracy of always predicting the word at ``source + offset`` (offset 0 excluded), for each offset."""
    _check_direction(direction)
    if len(arcs) != len(lengths):
        raise ValueError(f"lengths: expected one length per sentence ({len(arcs)}), got {len(lengths)}")
    scores = {}
    for offset in offsets:
        if offset == 0:
            continue
        hits = total = 0
        for sentence, length in zip(arcs, lengths):
            for source, targets in _gold(sentence, relation, direction):
                hits += int(0 <= source + offset < length and source + offset in targets)
                total += 1
        if total == 0:
            raise ValueError(f"relation: no arc labelled {relation!r} in these sentences")
        scores[offset] = hits / total
    return scores


def best_head(word_attentions: Sequence[Tensor], arcs: Sequence[Sequence[Arc]],
              relation: str) -> tuple[str, int, int, float]:
    """The (direction, layer, head) whose `arc_accuracy` is highest on these sentences, and that accuracy."""
    best = None
    for direction in DIRECTIONS:
        scores = arc_accuracy(word_attentions, arcs, relation, direction)
        layer, head = divmod(int(scores.argmax()), scores.shape[1])
        if best is None or scores[layer, head] > best[3]:
            best = (direction, layer, head, float(scores[layer, head]))
    return best


def best_offset(arcs: Sequence[Sequence[Arc]], lengths: Sequence[int], relation: str,
                offsets: Sequence[int] = range(-5, 6)) -> tuple[str, int, float]:
    """The (direction, offset) whose `offset_accuracy` is highest on these sentences, and that accuracy."""
    best = None
    for direction in DIRECTIONS:
        for offset, score in offset_accuracy(arcs, lengths, relation, direction, offsets).items():
            if best is None or score > best[2]:
                best = (direction, offset, score)
    return best
