"""Linear attention (Katharopoulos et al. 2020): a kernel feature map instead of the softmax, in O(n) time.

Replace exp(q·k) by φ(q)·φ(k) with φ(x) = elu(x) + 1 > 0. The weights are then φ(q_i)·φ(k_j) / Σ_j φ(q_i)·φ(k_j)
— the core's attention with that score and a division by the row sum (`sum_normalized`) — and by associativity
the output is φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) / φ(q_i)ᵀ Σ_j φ(k_j): the ``(d, d_v)`` sum is computed once, so the cost is
linear in the length. Causal: the sums run over j ≤ i, computed chunk by chunk with a carried prefix state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbook.core import attention, causal_mask, check_mask
from attnbook.errors import ShapeError, check_min_ndim, check_tensor


def elu_feature_map(x: Tensor) -> Tensor:
    """φ(x) = elu(x) + 1: positive everywhere, so the kernel φ(q)·φ(k) gives positive weights."""
    return F.elu(x) + 1


def sum_normalized(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """A ``normalize`` choice for the core: non-negative scores divided by their row sum (zero where masked)."""
    if mask is not None:
        scores = scores.masked_fill(~check_mask(mask, tuple(scores.shape), "scores"), 0.0)
    return scores / scores.sum(-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def quadratic_linear_attention(query: Tensor, key: Tensor, value: Tensor, causal: bool = False) -> Tensor:
    """Linear attention's weights written out: the core with score φ(q)·φ(k) and `sum_normalized`, O(n²)."""
    mask = causal_mask(query.shape[-2], key.shape[-2], device=query.device) if causal else None
    kernel = lambda q, k: elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)
    return attention(query, key, value, mask=mask, score=kernel, normalize=sum_normalized)[0]


def linear_attention(
    query: Tensor, key: Tensor, value: Tensor, causal: bool = False, eps: float = 1e-6, chunk_size: int = 128
) -> Tensor:
    """Linear attention in O(n): query ``(..., n_q, d)``, key ``(..., n_k, d)``, value ``(..., n_k, d_v)`` →
    ``(..., n_q, d_v)``. ``eps`` is added to the key sums in the denominator, as performer-pytorch does;
    ``causal`` (n_q = n_k) lets position i see keys 0..i."""
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, tensor)
        check_min_ndim(name, tensor, 2, "(..., length, features)")
    if key.shape[-1] != query.shape[-1] or value.shape[-2] != key.shape[-2]:
        raise ShapeError(
            f"key/value: expected key (..., n_k, {query.shape[-1]}) and value (..., n_k, d_v), "
            f"got key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    if causal and query.shape[-2] != key.shape[-2]:
        raise ShapeError(f"key: causal linear attention needs n_k = n_q = {query.shape[-2]}, got {tuple(key.shape)}")
    q, k = elu_feature_map(query), elu_feature_map(key)
    if not causal:
        context = k.transpose(-2, -1) @ value  # (..., d, d_v): Σ_j φ(k_j) v_jᵀ, once
        denominator = (q * (k.sum(-2, keepdim=True) + eps)).sum(-1, keepdim=True)  # (..., n_q, 1)
        return (q @ context) / denominator
    outputs = []
    context = q.new_zeros(*q.shape[:-2], q.shape[-1], value.shape[-1])  # prefix Σ_{j<chunk} φ(k_j) v_jᵀ
    key_sum = q.new_zeros(*q.shape[:-2], 1, q.shape[-1])  # prefix Σ_{j<chunk} φ(k_j)
    for start in range(0, q.shape[-2], chunk_size):
        qc, kc, vc = (t[..., start : start + chunk_size, :] for t in (q, k, value))
        inside = (qc @ kc.transpose(-2, -1)).tril()  # (..., c, c): within the chunk, j <= i
        running = key_sum + kc.cumsum(-2)  # (..., c, d): Σ_{j<=i} φ(k_j)
        denominator = (qc * (running + eps)).sum(-1, keepdim=True)
        outputs.append((qc @ context + inside @ vc) / denominator)
        context = context + kc.transpose(-2, -1) @ vc
        key_sum = running[..., -1:, :]
    return torch.cat(outputs, dim=-2)
