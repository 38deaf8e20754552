"""Grouped-query attention (Ainslie et al. 2023) and multi-query attention (Shazeer 2019) (chapter 9).

A choice of *which keys and values each head reads*: ``num_heads`` query heads share ``num_kv_heads`` key/value
heads, each shared by a group of ``num_heads / num_kv_heads`` query heads. ``num_kv_heads = num_heads`` is
ordinary multi-head attention, ``num_kv_heads = 1`` multi-query attention. The attention itself is the core's,
on key/value heads repeated to the query heads; what changes is the key/value cache kept while decoding, which
shrinks by the group size. Shape legend: ``(batch, heads, length, head_dim)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from attnbook.core import attention, check_mask
from attnbook.errors import ShapeError, check_ndim, check_tensor
from attnbook.positional import rotate_half_split


def kv_cache_numbers(num_kv_heads: int, head_dim: int, length: int, num_layers: int = 1, batch: int = 1) -> int:
    """Numbers kept in the key/value cache: a key and a value of ``head_dim`` per kv head, token, layer."""
    return 2 * num_kv_heads * head_dim * length * num_layers * batch


class GroupedQueryAttention(nn.Module):
    """Self-attention with ``num_heads`` query heads sharing ``num_kv_heads`` key/value heads.

    x ``(batch, n, embed_dim)`` → output ``(batch, n, embed_dim)`` and weights ``(batch, heads, n, n)``.
    ``mask`` is boolean, broadcastable to ``(batch, heads, n, n)``; ``position_embeddings`` is the rotary
    ``(cos, sin)`` pair of shape ``(batch, n, head_dim)`` that HuggingFace's Llama rotary embedding returns.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int, bias: bool = False):
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"embed_dim: expected a multiple of num_heads={num_heads}, got {embed_dim}")
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"num_kv_heads: expected a divisor of num_heads={num_heads}, got {num_kv_heads}")
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim, self.groups = embed_dim // num_heads, num_heads // num_kv_heads
        self.q_proj = nn.Linear(embed_dim, num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * self.head_dim, embed_dim, bias=bias)

    def heads(self, x: Tensor, count: int) -> Tensor:
        """(batch, n, count·head_dim) → (batch, count, n, head_dim)."""
        return x.unflatten(-1, (count, self.head_dim)).transpose(1, 2)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, position_embeddings: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        check_tensor("x", x)
        check_ndim("x", x, 3, "(batch, n, embed_dim)")
        if x.shape[-1] != self.embed_dim:
            raise ShapeError(f"x: expected feature size embed_dim={self.embed_dim}, got shape {tuple(x.shape)}")
        batch, n, _ = x.shape
        if mask is not None:
            check_mask(mask, (batch, self.num_heads, n, n), "(batch, heads, n, n)")
        q = self.heads(self.q_proj(x), self.num_heads)  # (B, H, n, hd)
        k = self.heads(self.k_proj(x), self.num_kv_heads)  # (B, H_kv, n, hd)
        v = self.heads(self.v_proj(x), self.num_kv_heads)  # (B, H_kv, n, hd)
        if position_embeddings is not None:
            cos, sin = position_embeddings
            if cos.shape != (batch, n, self.head_dim) or sin.shape != cos.shape:
                raise ShapeError(
                    f"position_embeddings: expected (cos, sin) of shape ({batch}, {n}, {self.head_dim}), "
                    f"got {tuple(cos.shape)}, {tuple(sin.shape)}"
                )
            q, k = rotate_half_split(q, cos[:, None], sin[:, None]), rotate_half_split(k, cos[:, None], sin[:, None])
        k, v = k.repeat_interleave(self.groups, dim=1), v.repeat_interleave(self.groups, dim=1)  # (B, H, n, hd)
        out, weights = attention(q, k, v, mask=mask)
        return self.o_proj(out.transpose(1, 2).flatten(2)), weights

    def kv_cache_numbers(self, length: int, batch: int = 1) -> int:
        """Numbers this layer caches for ``batch`` sequences of ``length`` tokens."""
        return kv_cache_numbers(self.num_kv_heads, self.head_dim, length, batch=batch)

    @classmethod
    def from_reference(cls, module: nn.Module) -> GroupedQueryAttention:
        """Copy a `transformers.models.llama.modeling_llama.LlamaAttention`."""
        if type(module).__name__ != "LlamaAttention":
            raise TypeError(f"module: expected transformers' LlamaAttention, got {type(module).__name__}")
        config = module.config
        if module.head_dim * config.num_attention_heads != config.hidden_size:
            raise ValueError("module: expected head_dim = hidden_size / num_attention_heads")
        new = cls(config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
                  bias=module.q_proj.bias is not None)
        new.load_state_dict(module.state_dict())
        return new.to(module.q_proj.weight.dtype)
