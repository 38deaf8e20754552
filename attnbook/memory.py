"""End-to-end memory networks (Sukhbaatar et al. 2015): attention as reading a memory, hop after hop.

A story's sentences are embedded twice, as keys ``m_i`` (matrix A) and values ``c_i`` (matrix C); the question
is embedded as ``u`` (matrix B). One hop is one call of `attnbook.core.attention` with dot scores:

    p = softmax(uᵀ m_i),   o = Σ_i p_i c_i,   u ← u + o,

and after K hops the answer is ``softmax(W u)``. With adjacent weight tying the K hops share K+1 matrices:
A¹ = B, A^{k+1} = C^k and Wᵀ = C^K. Sentences are bags of words weighted by the position encoding ``l_j``
(eq. in section 4.1), times `POSITION_SCALE`, plus a learned temporal vector per memory slot (T_A, T_C, tied
the same way).

Shape legend: B questions, M memory slots (slot 0 = most recent sentence), J words per sentence, d features,
V words in the vocabulary, K hops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook import repro
from attnbook.core import attention, check_mask
from attnbook.data.babi import Batch
from attnbook.errors import ShapeError, check_ndim, check_shape, check_tensor
from attnbook.train import progress


# Test error (%) on bAbI 1k in Sukhbaatar et al. (2015), Table 1, column "PE LS RN" (3 hops, each task trained
# on its own, best of 10 runs): mean 13.9, 11 failed tasks (error > 5%).
PAPER_PE_LS_RN = {1: 0.0, 2: 8.3, 3: 40.3, 4: 2.8, 5: 13.1, 6: 7.6, 7: 17.3, 8: 10.0, 9: 13.2, 10: 15.1,
                  11: 0.9, 12: 0.2, 13: 0.4, 14: 1.7, 15: 0.0, 16: 1.3, 17: 51.0, 18: 11.1, 19: 82.8, 20: 0.0}
# Same table, PE LS trained jointly on all 20 tasks with 1, 2 and 3 hops: the paper's hop comparison.
PAPER_HOPS_JOINT = {2: {1: 62.0, 2: 15.6, 3: 14.0}, 3: {1: 76.9, 2: 31.6, 3: 33.1}}
# Column "PE LS RN joint" (3 hops, one model for all tasks) for tasks 1-3.
PAPER_PE_LS_RN_JOINT = {1: 0.0, 2: 11.4, 3: 21.9}


# The model weighs words by POSITION_SCALE · l_kj. The paper's l_kj averages 1/2 over words and features; the
# paper's released code (MemN2N-babi-matlab) uses 1 + 4(k - (d+1)/2)(j - (J+1)/2)/(dJ) (J: the longest sentence
# plus one), which is 2 l_kj up to O(1/d + 1/J) terms and averages 1, like a plain bag of words. The factor
# matters: with l_kj as printed, task 16 (basic induction) stays at 54% test error under Adam and SGD alike;
# with 2 l_kj it falls to about 1%.
POSITION_SCALE = 2.0


def position_encoding(sentence_len: int, embed_dim: int) -> Tensor:
    """The paper's position encoding for a sentence of J words: ``(J, d)`` with
    ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)`` for word j = 1..J and feature k = 1..d."""
    if sentence_len < 1 or embed_dim < 1:
        raise ValueError(f"sentence_len, embed_dim: expected positive sizes, got {sentence_len}, {embed_dim}")
    j = torch.arange(1, sentence_len + 1, dtype=torch.float32)[:, None] / sentence_len
    k = torch.arange(1, embed_dim + 1, dtype=torch.float32)[None, :] / embed_dim
    return (1 - j) - k * (1 - 2 * j)


def word_weights(tokens: Tensor, embed_dim: int) -> Tensor:
    """Position-encoding weights ``(..., J, d)`` for padded sentences ``(..., J)`` (0 = padding word).

    Each sentence uses its own length J, as in the paper; padding words get weight 0.
    """
    a, c = _split_weights(tokens)
    k = torch.arange(1, embed_dim + 1, dtype=torch.float32) / embed_dim
    return a[..., None] - k * c[..., None]


def _split_weights(tokens: Tensor) -> tuple[Tensor, Tensor]:
    """``l_kj = a_j - (k/d) c_j`` with ``a_j = 1 - j/J`` and ``c_j = 1 - 2j/J``: both ``(..., J)``, 0 on padding."""
    real = tokens != 0
    length = real.sum(-1, keepdim=True).clamp(min=1).float()
    j = torch.arange(1, tokens.shape[-1] + 1, dtype=torch.float32) / length
    return (1 - j) * real, (1 - 2 * j) * real


def bag_of_words(tokens: Tensor, vocab_size: int, position: bool = True) -> Tensor:
    """Each sentence ``(..., J)`` as two weighted word counts side by side, ``(..., 2V)``.

    Because ``l_kj = a_j - (k/d) c_j``, the position-encoded sentence Σ_j l_j ⊙ E x_j equals
    ``counts[:V] @ E - (k/d) ⊙ (counts[V:] @ E)``: one small matrix product instead of a gather per word
    (see `embed_sentences`). Without position encoding the first half is a plain bag of words, the second 0.
    """
    a, c = _split_weights(tokens) if position else ((tokens != 0).float(), torch.zeros(tokens.shape))
    empty = torch.zeros(*tokens.shape[:-1], 2 * vocab_size)
    return empty.scatter_add(-1, torch.cat([tokens, tokens + vocab_size], -1), torch.cat([a, c], -1))


def hop(u: Tensor, keys: Tensor, values: Tensor, mask: Tensor, linear: bool = False) -> tuple[Tensor, Tensor]:
    """One memory read: ``u (..., 1, d)`` attends over ``keys, values (..., M, d)``; returns ``(o, p)``.

    With softmax it is exactly `attnbook.core.attention` with dot scores, ``p = softmax(uᵀ m_i)``. In linear
    start the core skips the normalisation (``normalize="none"``): the weights are the raw dot scores, zero on
    masked slots.
    """
    return attention(u, keys, values, mask=mask, score="dot", normalize="none" if linear else "softmax")


def embed_sentences(embeddings: Tensor, tokens: Tensor, position: bool = True) -> Tensor:
    """Σ_j s l_j ⊙ E_k x_j for every matrix k: embeddings ``(..., K+1, V, d)``, tokens ``(..., N, J)`` →
    ``(..., K+1, N, d)``, where ``...`` (e.g. a restart axis) is shared by both or absent from both.
    s is `POSITION_SCALE`; without position encoding s = 1 and l_j = 1 (a plain bag of words)."""
    vocab_size, embed_dim = embeddings.shape[-2:]
    k = torch.arange(1, embed_dim + 1, dtype=torch.float32) / embed_dim
    scale = POSITION_SCALE if position else 1.0
    matrices = scale * torch.cat([embeddings, -k * embeddings], dim=-2)  # (..., K+1, 2V, d)
    matrices = matrices.transpose(-3, -2).flatten(-2)  # (..., 2V, (K+1) d)
    vectors = bag_of_words(tokens, vocab_size, position) @ matrices  # (..., N, (K+1) d)
    return vectors.unflatten(-1, (-1, embed_dim)).movedim(-2, -3)


def memory_vectors(embeddings: Tensor, temporal: Tensor | None, stories: Tensor, position: bool = True) -> Tensor:
    """Memories of every matrix with temporal encoding: stories ``(..., B, M, J)`` → ``(..., K+1, B, M, d)``;
    keys of hop k are ``[k-1]`` (A^k), values ``[k]`` (C^k)."""
    batch, slots = stories.shape[-3:-1]
    memory = embed_sentences(embeddings, stories.flatten(-3, -2), position)  # (..., K+1, B M, d)
    memory = memory.unflatten(-2, (batch, slots))  # (..., K+1, B, M, d)
    if temporal is not None:
        memory = memory + temporal[..., :, None, :slots, :]
    return memory


def fill_memory(memory: Tensor, memory_mask: Tensor, slots: int) -> tuple[Tensor, Tensor]:
    """The paper's released code's fixed memory buffer: ``slots`` slots, every one attended.

    memory ``(..., K+1, B, M, d)`` with M ≤ slots, memory_mask ``(..., B, M)`` → memory ``(..., K+1, B, slots, d)``
    and an all-True mask ``(..., B, slots)``. The slots after a story's last sentence are *empty memories*: in
    MemN2N-babi-matlab (and its Python port) every word of them, the time word included, is the nil word,
    whose embedding is held at zero, so their keys and values are zero vectors (score 0, adding nothing to
    o). The softmax then puts some weight on "nothing", the more so the shorter the story. Only zeros are
    appended: no bag of words is computed for the empty slots.
    """
    length = memory.shape[-2]
    if length > slots:
        raise ShapeError(f"memory: expected at most {slots} slots, got shape {tuple(memory.shape)}")
    memory = memory * memory_mask[..., None, :, :, None]  # padding slots: zero, temporal vector included
    empty = memory.new_zeros(*memory.shape[:-2], slots - length, memory.shape[-1])
    full = torch.ones(*memory_mask.shape[:-1], slots, dtype=torch.bool)
    return torch.cat([memory, empty], dim=-2), full


def read_memory(embeddings: Tensor, temporal: Tensor | None, stories: Tensor, queries: Tensor,
                memory_mask: Tensor, position: bool = True, linear: bool = False,
                fill_to: int | None = None) -> tuple[Tensor, Tensor]:
    """The K-hop forward pass on explicit weights (so that several restarts can run as one batch).

    embeddings ``(..., K+1, V, d)``, temporal ``(..., K+1, M, d)`` or None, stories ``(..., B, M, J)``,
    queries ``(..., B, J_q)``, memory_mask ``(..., B, M)`` → logits ``(..., B, V)``, attention ``(..., B, K, M)``.
    With ``fill_to = S`` the memory is the released code's fixed buffer of S slots (`fill_memory`): padding
    becomes empty memories that are attended, and the attention is ``(..., B, K, S)``.
    """
    hops = embeddings.shape[-3] - 1
    memory = memory_vectors(embeddings, temporal, stories, position)  # (..., K+1, B, M, d)
    if fill_to is not None:
        memory, memory_mask = fill_memory(memory, memory_mask, fill_to)  # (..., K+1, B, S, d), (..., B, S)
    u = embed_sentences(embeddings[..., :1, :, :], queries, position)[..., 0, :, None, :]  # (..., B, 1, d)
    mask = memory_mask[..., :, None, :]  # (..., B, 1, M)
    weights = []
    for k in range(hops):
        o, p = hop(u, memory[..., k, :, :, :], memory[..., k + 1, :, :, :], mask, linear)
        u = u + o
        weights.append(p)
    logits = u[..., 0, :] @ embeddings[..., hops, :, :].transpose(-1, -2)  # W = (C^K)ᵀ
    return logits, torch.cat(weights, dim=-2)


class MemN2N(nn.Module):
    """End-to-end memory network with K hops and adjacent weight tying.

    ``forward(stories (B, M, J), queries (B, J_q), memory_mask (B, M), linear=False)`` returns answer logits
    ``(B, V)`` and the attention of every hop ``(B, K, M)``. ``memory_mask`` is True on real memory slots
    (sentences and, in training, the empty memories of random noise); padding slots get zero attention (by default).
    ``linear=True`` is the paper's linear start: the softmax of every hop is removed.
    ``embeddings[0]`` is B = A¹, ``embeddings[k]`` is C^k = A^{k+1}, ``embeddings[K]`` is C^K = Wᵀ;
    ``temporal`` holds T_A/T_C tied the same way.

    ``fill_memory=True`` reads the released code's fixed buffer instead (`fill_memory`): all ``memory_size``
    slots are attended, those after the story's last sentence as empty (zero) memories, and the attention is
    ``(B, K, memory_size)``. It is off by default: masked padding makes a story's answer independent of how
    far it is padded, and the attention a distribution over its sentences only.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 20, hops: int = 3, memory_size: int = 50, *,
                 position_encoding: bool = True, temporal_encoding: bool = True, init_std: float = 0.1,
                 fill_memory: bool = False):
        super().__init__()
        if hops < 1:
            raise ValueError(f"hops: expected at least one hop, got {hops}")
        self.vocab_size, self.embed_dim, self.hops, self.memory_size = vocab_size, embed_dim, hops, memory_size
        self.use_position, self.fill_memory = position_encoding, fill_memory
        self.embeddings = nn.Parameter(torch.randn(hops + 1, vocab_size, embed_dim) * init_std)
        self.temporal = (nn.Parameter(torch.randn(hops + 1, memory_size, embed_dim) * init_std)
                         if temporal_encoding else None)

    def embed(self, tokens: Tensor) -> Tensor:
        """Σ_j s l_j ⊙ E_k x_j with every matrix: ``(B, J)`` → ``(K+1, B, d)`` (the question uses ``[0]`` = B)."""
        return embed_sentences(self.embeddings, tokens, self.use_position)

    def memories(self, stories: Tensor) -> Tensor:
        """Memory vectors ``(K+1, B, M, d)`` with temporal encoding: keys A^k = ``[k-1]``, values C^k = ``[k]``."""
        return memory_vectors(self.embeddings, self.temporal, stories, self.use_position)

    def forward(self, stories: Tensor, queries: Tensor, memory_mask: Tensor,
                linear: bool = False) -> tuple[Tensor, Tensor]:
        self._check(stories, queries, memory_mask)
        return read_memory(self.embeddings, self.temporal, stories, queries, memory_mask, self.use_position, linear,
                           self.memory_size if self.fill_memory else None)

    def _check(self, stories: Tensor, queries: Tensor, memory_mask: Tensor) -> None:
        check_tensor("stories", stories)
        check_tensor("queries", queries)
        check_ndim("stories", stories, 3, "(batch, memory slots, words)")
        check_ndim("queries", queries, 2, "(batch, words)")
        if stories.shape[1] > self.memory_size:
            raise ShapeError(f"stories: expected at most memory_size={self.memory_size} slots, "
                             f"got shape {tuple(stories.shape)}")
        if queries.shape[0] != stories.shape[0]:
            raise ShapeError(f"queries: expected batch size {stories.shape[0]} (the stories'), "
                             f"got shape {tuple(queries.shape)}")
        check_mask(memory_mask, tuple(stories.shape[:2]), "(batch, memory slots)")
        if memory_mask.shape != stories.shape[:2]:
            raise ShapeError(f"memory_mask: expected shape {tuple(stories.shape[:2])}, got {tuple(memory_mask.shape)}")

    def answer(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Predicted answer ids ``(B,)`` and attention ``(B, K, M)`` for a `Batch`, without gradients."""
        self.eval()
        with torch.no_grad():
            logits, weights = self(batch.stories, batch.queries, batch.memory_mask)
        return logits.argmax(-1), weights

    def error(self, batch: Batch) -> float:
        """Fraction of wrong answers on a `Batch` (the paper's test error, as a fraction)."""
        return (self.answer(batch)[0] != batch.answers).float().mean().item()


def attention_on_facts(weights: Tensor, supporting: Tensor, memory_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean attention mass each hop puts on the supporting facts, and what uniform attention would put there.

    weights ``(N, K, M)``, supporting and memory_mask ``(N, M)`` → ``(K,)`` and a scalar.
    """
    check_ndim("weights", weights, 3, "(questions, hops, memory slots)")
    check_shape("supporting", supporting, (weights.shape[0], weights.shape[2]))
    check_shape("memory_mask", memory_mask, (weights.shape[0], weights.shape[2]))
    on_facts = (weights * supporting[:, None, :]).sum(-1).mean(0)
    uniform = (supporting.sum(-1) / memory_mask.sum(-1).clamp(min=1)).mean()
    return on_facts, uniform


def add_empty_memories(batch: Batch, rate: float, generator: torch.Generator | None = None) -> Batch:
    """Random noise (RN): insert an empty memory before each sentence with probability ``rate``.

    The later sentences shift to older slots, so the temporal vectors cannot memorise exact positions.
    Empty memories are real slots (masked in); sentences pushed past the last slot are dropped.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate: expected a probability in [0, 1), got {rate}")
    n, m = batch.memory_mask.shape
    blanks = (torch.rand(n, m, generator=generator) < rate) & batch.memory_mask
    position = torch.arange(m) + blanks.long().cumsum(1)  # new slot of each sentence
    keep = batch.memory_mask & (position < m)
    rows = torch.arange(n)[:, None].expand(n, m)[keep]
    stories = torch.zeros_like(batch.stories)
    stories[rows, position[keep]] = batch.stories[keep]
    supporting = torch.zeros_like(batch.supporting)
    supporting[rows, position[keep]] = batch.supporting[keep]
    length = torch.where(keep, position + 1, 0).amax(1)
    return Batch(stories, torch.arange(m) < length[:, None], batch.queries, batch.answers, supporting)


# ---------------------------------------------------------------------------------------------------------
# Training: the paper's recipe, several restarts trained side by side (stacked weights, one batch).


@dataclass(frozen=True)
class Recipe:
    """Training settings; defaults follow the paper's bAbI 1k recipe (section 4.2), scaled by ``epochs``.

    SGD with learning rate ``lr`` halved every ``halve_every`` epochs, batches of ``batch_size`` questions
    (loss summed over the batch), gradient norm clipped at ``clip_norm``. Linear start: the softmax is
    removed, learning rate ``linear_lr``, until the validation loss stops falling (no new minimum for
    ``linear_patience`` epochs; at most ``linear_epochs``); then the softmax is back for ``epochs`` epochs.
    ``noise`` is the rate of random empty memories during training. ``optimizer="adam"`` swaps SGD for Adam
    (Kingma & Ba 2015) with the same schedule, which needs fewer epochs. ``fill_memory`` trains (and keeps)
    models that read the released code's fixed buffer (`MemN2N`, `fill_memory`) of
    ``min(memory_size, slots of the training batch)`` slots, the code's ``min(50, longest story)``.
    """

    embed_dim: int = 20
    hops: int = 3
    memory_size: int = 50
    epochs: int = 100
    lr: float = 0.01
    halve_every: int = 25
    batch_size: int = 32
    clip_norm: float = 40.0
    linear_start: bool = True
    linear_lr: float = 0.005
    linear_epochs: int = 30
    linear_patience: int = 1
    noise: float = 0.1
    optimizer: str = "sgd"
    position_encoding: bool = True
    temporal_encoding: bool = True
    fill_memory: bool = False


@dataclass
class TrainResult:
    """The kept restart (lowest training loss, or validation error with ``select="val"``), every restart's numbers."""

    model: MemN2N
    best: int
    train_loss: list[float]  # per restart, final, on the training questions
    val_error: list[float]  # per restart
    linear_epochs: int  # epochs spent in linear start
    history: list[list[float]]  # per epoch, per restart: mean training loss


def _clip_per_restart(params: list[Tensor], max_norm: float) -> None:
    """Clip the gradient norm of each restart (leading axis) separately, as if trained alone."""
    norms = torch.zeros(params[0].shape[0])
    for p in params:
        if p.grad is not None:
            norms += p.grad.pow(2).flatten(1).sum(1)
    scale = (max_norm / (norms.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        if p.grad is not None:
            p.grad.mul_(scale.view(-1, *[1] * (p.dim() - 1)))


def train_memn2n(train: Batch, val: Batch, vocab_size: int, recipe: Recipe = Recipe(), restarts: int = 3,
                 generator: torch.Generator | None = None, desc: str = "MemN2N", *,
                 select: str = "train_loss") -> TrainResult:
    """Train ``restarts`` memory networks from different random starts at once; keep the one with the lowest
    training loss (the paper picks the best of 10 runs by training error).

    ``select="val"`` keeps instead the restart with the lowest validation error (ties: lowest validation loss),
    which guards against a restart that has memorised the training questions.

    The restarts run as one batch: their weights are stacked on a leading axis and `read_memory` broadcasts
    over it. Each restart sees its own batch order and its own random empty memories; they share only the
    epoch at which linear start ends (when their mean validation loss stops falling).
    """
    if restarts < 1:
        raise ValueError(f"restarts: expected at least 1, got {restarts}")
    if select not in ("train_loss", "val"):
        raise ValueError(f"select: expected 'train_loss' or 'val', got {select!r}")
    memory_size = min(recipe.memory_size, train.stories.shape[1]) if recipe.fill_memory else recipe.memory_size
    models = [MemN2N(vocab_size, recipe.embed_dim, recipe.hops, memory_size, position_encoding=recipe.position_encoding,
                     temporal_encoding=recipe.temporal_encoding, fill_memory=recipe.fill_memory)
              for _ in range(restarts)]
    params = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).requires_grad_()
              for name, _ in models[0].named_parameters()}
    leaves = list(params.values())
    if recipe.optimizer not in ("sgd", "adam"):
        raise ValueError(f"recipe.optimizer: expected 'sgd' or 'adam', got {recipe.optimizer!r}")
    optimizer = (torch.optim.SGD if recipe.optimizer == "sgd" else torch.optim.Adam)(leaves, lr=recipe.lr)

    def forward(stories: Tensor, queries: Tensor, mask: Tensor, linear: bool) -> Tensor:
        return read_memory(params["embeddings"], params.get("temporal"), stories, queries, mask,
                           recipe.position_encoding, linear, memory_size if recipe.fill_memory else None)[0]

    def losses(batch: Batch, linear: bool) -> Tensor:
        """Mean cross-entropy of each restart on a fixed batch: ``(restarts,)``."""
        with torch.no_grad():
            logits = forward(batch.stories, batch.queries, batch.memory_mask, linear)  # (R, N, V)
            return F.cross_entropy(logits.transpose(1, 2), batch.answers.expand(restarts, -1),
                                   reduction="none").mean(1)

    def epoch(lr: float, linear: bool) -> list[float]:
        order = torch.stack([torch.randperm(len(train), generator=generator) for _ in range(restarts)])
        total = torch.zeros(restarts)
        for start in range(0, len(train), recipe.batch_size):
            index = order[:, start: start + recipe.batch_size]  # (R, b)
            part = train[index.flatten()]
            if recipe.noise > 0:
                part = add_empty_memories(part, recipe.noise, generator)
            shape = index.shape
            logits = forward(part.stories.unflatten(0, shape), part.queries.unflatten(0, shape),
                             part.memory_mask.unflatten(0, shape), linear)  # (R, b, V)
            loss = F.cross_entropy(logits.transpose(1, 2), part.answers.view(shape), reduction="none")
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()  # summed over the batch (as the paper's code) and over restarts
            _clip_per_restart(leaves, recipe.clip_norm)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            total += loss.detach().sum(1)
        return (total / len(train)).tolist()

    with repro.threads(1):  # the matrices are tiny: a second thread costs more than it saves
        history, linear_done = _schedule(recipe, epoch, losses, val, desc)
        train_loss = losses(train, linear=False).tolist()
        val_loss = losses(val, linear=False).tolist()
    for r, model in enumerate(models):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name][r])
        model.eval()
    val_error = [m.error(val) for m in models]
    if select == "val":
        best = min(range(restarts), key=lambda r: (val_error[r], val_loss[r]))
    else:
        best = min(range(restarts), key=train_loss.__getitem__)
    return TrainResult(models[best], best, train_loss, val_error, linear_done, history)


def _schedule(recipe: Recipe, epoch, losses, val: Batch, desc: str) -> tuple[list[list[float]], int]:
    """Linear start (until the validation loss stops falling), then the annealed softmax phase."""
    history: list[list[float]] = []
    linear_done = 0
    if recipe.linear_start:
        best_val, stale = math.inf, 0
        for _ in progress(range(recipe.linear_epochs), desc=f"{desc} (linear start)"):
            history.append(epoch(recipe.linear_lr, linear=True))
            linear_done += 1
            val_loss = losses(val, linear=True).mean().item()
            best_val, stale = (val_loss, 0) if val_loss < best_val else (best_val, stale + 1)
            if stale >= recipe.linear_patience:
                break
    for e in progress(range(recipe.epochs), desc=desc):
        history.append(epoch(recipe.lr * 0.5 ** (e // recipe.halve_every), linear=False))
    return history, linear_done
