"""Decoding with any of the book's sequence-to-sequence models (chapter 3): greedy, beam search, exact match.

A model offers ``encode(src) -> context`` (a tuple of batch-first tensors) and
``next_log_probs(context, prefix) -> (batch, vocab)``: `attnbook.transformer.Seq2SeqTransformer` and the GRU
models of `attnbook.rnn` both do. A model that also offers ``decode_step(context, prefix, cache)`` (the
Transformer's incremental decoding, which keeps each layer's keys and values) is stepped through that instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.errors import check_ndim, check_tensor


def _stepper(model: nn.Module) -> Callable[..., tuple[Tensor, tuple[Tensor, ...]]]:
    """``step(context, prefix, cache) -> (log_probs, cache)``: the model's ``decode_step``, or ``next_log_probs``
    with an empty cache for models that recompute the whole prefix."""
    if hasattr(model, "decode_step"):
        return model.decode_step
    return lambda context, prefix, cache: (model.next_log_probs(context, prefix), ())


@torch.no_grad()
def greedy_decode(model: nn.Module, src: Tensor, bos_id: int, eos_id: int, max_len: int) -> Tensor:
    """Pick the most probable next token until every sequence has emitted ``eos_id`` or ``max_len`` tokens.

    Returns ids ``(batch, <= max_len + 1)`` starting with ``bos_id``; positions after EOS hold ``eos_id``.
    """
    context, step, cache = model.encode(src), _stepper(model), None
    out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        log_probs, cache = step(context, out, cache)
        token = log_probs.argmax(-1)
        token = torch.where(done, torch.full_like(token, eos_id), token)
        out = torch.cat([out, token[:, None]], dim=1)
        done |= token == eos_id
        if bool(done.all()):
            break
    return out


@torch.no_grad()
def beam_search(model: nn.Module, src: Tensor, bos_id: int, eos_id: int, max_len: int, beam_size: int = 4,
                length_penalty: float = 0.0) -> list[list[int]]:
    """Keep the ``beam_size`` most probable prefixes at each step; return the best finished sequence per source.

    The score of a finished hypothesis is its total log-probability divided by length^``length_penalty``
    (0 = no normalisation). Returns token-id lists (without BOS, with EOS if it was produced).

    All sources are searched at once: row ``b * beam_size + k`` of each decoder call is beam ``k`` of source
    ``b``. A source leaves the batch as soon as its best finished score cannot be beaten, a bound that is
    exact because a log-probability never grows when a token is appended (see `_settled`).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size: expected at least 1, got {beam_size}")
    check_tensor("src", src)
    check_ndim("src", src, 2, "(batch, n_s) token ids")
    n_src, device = src.shape[0], src.device
    context = tuple(t.repeat_interleave(beam_size, dim=0) for t in model.encode(src))
    step, cache = _stepper(model), None
    prefixes = torch.full((n_src * beam_size, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.full((n_src, beam_size), -math.inf, device=device)
    scores[:, 0] = 0.0  # one live hypothesis per source at the start: the others would only duplicate it
    source = torch.arange(n_src, device=device)  # which source each block of beam_size rows belongs to
    best: list[tuple[float, list[int]]] = [(-math.inf, [])] * n_src

    def finish(b: int, seq: Tensor, total: float) -> None:
        normalised = total / (seq.shape[0] - 1) ** length_penalty
        if normalised > best[b][0]:  # strict: of equal scores the earlier-found wins, as `max` would pick it
            best[b] = (normalised, seq[1:].tolist())

    for length in range(1, max_len + 1):
        alive = source.shape[0]
        log_probs, cache = step(context, prefixes, cache)
        vocab = log_probs.shape[-1]
        total = (scores[..., None] + log_probs.view(alive, beam_size, vocab)).view(alive, beam_size * vocab)
        top = total.topk(min(2 * beam_size, total.shape[1]), dim=1)  # enough that beam_size survive EOS
        rows, tokens = top.indices // vocab, top.indices % vocab
        valid = top.values > -math.inf
        ended = valid & (tokens == eos_id)
        for i, k in ended.nonzero().tolist():
            seq = torch.cat([prefixes[int(i * beam_size + rows[i, k])], tokens[i, k, None]])
            finish(int(source[i]), seq, float(top.values[i, k]))
        # the beam_size best hypotheses that did not end (top.values is sorted, so topk keeps that order)
        kept = top.values.masked_fill(ended | ~valid, -math.inf).topk(beam_size, dim=1)
        scores, tokens = kept.values, tokens.gather(1, kept.indices)
        parent = torch.arange(alive, device=device)[:, None] * beam_size + rows.gather(1, kept.indices)
        open_ = ~_settled(scores, torch.tensor([best[b][0] for b in source.tolist()], device=device),
                          length, max_len, length_penalty)
        source, scores, tokens, parent = source[open_], scores[open_], tokens[open_], parent[open_].flatten()
        if source.shape[0] == 0:  # every source's answer is final
            break
        prefixes = torch.cat([prefixes[parent], tokens.reshape(-1, 1)], dim=1)
        context, cache = tuple(t[parent] for t in context), tuple(t[parent] for t in cache)
    else:  # max_len reached: the unfinished hypotheses compete too
        for i, b in enumerate(source.tolist()):
            for k in range(beam_size):
                if scores[i, k] > -math.inf:
                    finish(b, prefixes[i * beam_size + k], float(scores[i, k]))
    return [seq for _, seq in best]


def _settled(alive: Tensor, best_finished: Tensor, step: int, max_len: int, length_penalty: float) -> Tensor:
    """Per source: can no live hypothesis (scores ``alive`` (sources, beam)) still beat ``best_finished``?

    Appending tokens only lowers a total log-probability s <= 0, so a hypothesis extended to length L scores at
    most s / L^p; over the lengths still reachable (step + 1 … max_len) that is largest at one end.
    """
    best_alive = alive.max(dim=1).values.clamp(max=0.0)
    bound = torch.maximum(best_alive / (step + 1) ** length_penalty, best_alive / max_len**length_penalty)
    if step >= max_len:  # the live hypotheses end here at length max_len
        bound = best_alive / max_len**length_penalty
    return best_finished >= bound


@torch.no_grad()
def exact_match(model: nn.Module, src: Tensor, tgt: Tensor, bos_id: int, eos_id: int, pad_id: int = 0) -> Tensor:
    """Greedy-decode ``src`` and compare with ``tgt`` (BOS … EOS, padded): a ``(batch,)`` bool, True if identical."""
    model.eval()
    out = greedy_decode(model, src, bos_id, eos_id, max_len=tgt.shape[1] - 1)
    width = max(out.shape[1], tgt.shape[1])
    predicted = F.pad(out, (0, width - out.shape[1]), value=eos_id)
    predicted = torch.where(torch.cumsum(predicted == eos_id, 1) - (predicted == eos_id).long() > 0,
                            torch.full_like(predicted, pad_id), predicted)  # everything after the first EOS
    return (predicted == F.pad(tgt, (0, width - tgt.shape[1]), value=pad_id)).all(dim=1)
