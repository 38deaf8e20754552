"""The end-to-end memory network of chapter 1 (Sukhbaatar et al. 2015): attention as reading a memory, hop after hop.

A story's sentences are embedded twice, as keys ``m_i`` (matrix A) and values ``c_i`` (matrix C); the question
is embedded as ``u`` (matrix B). One hop is one call of `attnbook.core.attention` with dot scores:

    p = softmax(uᵀ m_i),   o = Σ_i p_i c_i,   u ← u + o,

and after K hops the answer is ``softmax(W u)``. With adjacent weight tying the K hops share K+1 matrices:
A¹ = B, A^{k+1} = C^k and Wᵀ = C^K. Sentences are embedded by `attnbook.memory.encoding`, plus a learned
temporal vector per memory slot (T_A, T_C, tied the same way).

Shape legend: B questions, M memory slots (slot 0 = most recent sentence), J words per sentence, d features,
V words in the vocabulary, K hops.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnbook.core import attention, check_mask
from attnbook.data.babi import Batch
from attnbook.errors import ShapeError, check_ndim, check_shape, check_tensor
from attnbook.memory.encoding import embed_sentences

def hop(u: Tensor, keys: Tensor, values: Tensor, mask: Tensor, linear: bool = False) -> tuple[Tensor, Tensor]:
    """One memory read: ``u (..., 1, d)`` attends over ``keys, values (..., M, d)``; returns ``(o, p)``.

    With softmax it is exactly `attnbook.core.attention` with dot scores, ``p = softmax(uᵀ m_i)``. In linear
    start the core skips the normalisation (``normalize="none"``): the weights are the raw dot scores, zero on
    masked slots.
    """
    return attention(u, keys, values, mask=mask, score="dot", normalize="none" if linear else "softmax")



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


