"""Decoding with any of the book's sequence-to-sequence models (chapter 3): greedy, beam search, exact match.

A model offers ``encode(src) -> context`` (a tuple of batch-first tensors) and
``next_log_probs(context, prefix) -> (batch, vocab)``: `attnbook.transformer.Seq2SeqTransformer` and the GRU
models of `attnbook.rnn` both do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.errors import check_ndim, check_tensor

@torch.no_grad()
def greedy_decode(model: nn.Module, src: Tensor, bos_id: int, eos_id: int, max_len: int) -> Tensor:
    """Pick the most probable next token until every sequence has emitted ``eos_id`` or ``max_len`` tokens.

    Returns ids ``(batch, <= max_len + 1)`` starting with ``bos_id``; positions after EOS hold ``eos_id``.
    """
    context = model.encode(src)
    out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        token = model.next_log_probs(context, out).argmax(-1)
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
    """
    if beam_size < 1:
        raise ValueError(f"beam_size: expected at least 1, got {beam_size}")
    check_tensor("src", src)
    check_ndim("src", src, 2, "(batch, n_s) token ids")
    results = []
    for b in range(src.shape[0]):
        context = model.encode(src[b : b + 1])
        beams = torch.full((1, 1), bos_id, dtype=torch.long, device=src.device)
        scores = torch.zeros(1, device=src.device)
        finished: list[tuple[float, list[int]]] = []
        for _ in range(max_len):
            expanded = tuple(t.expand(beams.shape[0], *t.shape[1:]) for t in context)
            log_probs = model.next_log_probs(expanded, beams)  # (beams, vocab)
            vocab = log_probs.shape[-1]
            total = (scores[:, None] + log_probs).flatten()
            top = total.topk(min(2 * beam_size, total.numel()))  # enough that beam_size survive EOS
            rows, tokens = top.indices // vocab, top.indices % vocab
            candidates = torch.cat([beams[rows], tokens[:, None]], dim=1)
            ended = tokens == eos_id
            for seq, score in zip(candidates[ended], top.values[ended]):
                finished.append((float(score) / (seq.shape[0] - 1) ** length_penalty, seq[1:].tolist()))
            beams, scores = candidates[~ended][:beam_size], top.values[~ended][:beam_size]
            if beams.shape[0] == 0:
                break
        for seq, score in zip(beams, scores):  # unfinished hypotheses compete too
            finished.append((float(score) / (seq.shape[0] - 1) ** length_penalty, seq[1:].tolist()))
        results.append(max(finished, key=lambda item: item[0])[1])
    return results


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
