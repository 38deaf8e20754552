"""The two layer types of the Transformer (Vaswani et al. 2017), chapter 3, built from small parts.

Each layer is sublayers in residual connections: `MultiHeadAttention` (from `attnbook.core`, so every attention
runs through the book's core) and a `FeedForward` network, FFN(x) = max(0, x W₁ + b₁) W₂ + b₂ (or GELU instead of
max(0, ·)). `residual` writes the two ways of wiring a sublayer once, for both layer types:

    post-norm (the paper):            x = LayerNorm(x + Sublayer(x))
    pre-norm (``norm_first=True``):   x = x + Sublayer(LayerNorm(x))

Parameter names mirror `torch.nn.TransformerEncoderLayer` / `TransformerDecoderLayer` (``self_attn``, ``norm1``,
and ``linear1`` / ``linear2`` of the feed-forward network), so ``from_reference`` copies weights one to one.
Masks are boolean, **True = may attend**, broadcastable to ``(batch, heads, n_q, n_k)``.
Shape legend: ``(batch, n, d_model)``; batch first throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.core import MultiHeadAttention
from attnbook.errors import ShapeError, check_ndim, check_tensor

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu}  # F.gelu is the exact erf GELU


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def _check_input(name: str, x: object, d_model: int) -> Tensor:
    x = check_tensor(name, x)
    check_ndim(name, x, 3, "(batch, n, d_model)")
    if x.shape[-1] != d_model:
        raise ShapeError(f"{name}: expected feature size d_model={d_model}, got shape {tuple(x.shape)}")
    return x


def _reference_activation(module: nn.Module) -> str:
    """The name of a torch layer's activation ("relu" or "gelu"), whether stored as a function or a module."""
    act = module.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    raise ValueError(f"module: activation {act!r} has no counterpart here (expected ReLU or exact GELU)")


def _copy_linear_and_norms(new: nn.Module, module: nn.Module, names: Sequence[str]) -> None:
    with torch.no_grad():
        for name in names:
            target, source = getattr(new, name), getattr(module, name)
            target.weight.copy_(source.weight)
            if source.bias is not None:
                target.bias.copy_(source.bias)


def _layer_from_reference(cls: type, module: nn.Module, reference: type, copied: Sequence[str]) -> nn.Module:
    """Build ``cls`` with ``module``'s sizes and copy its self-attention and the named linear/norm layers."""
    if not isinstance(module, reference):
        raise TypeError(f"module: expected torch.nn.{reference.__name__}, got {type(module).__name__}")
    attn = module.self_attn
    new = cls(attn.embed_dim, attn.num_heads, module.linear1.out_features, module.dropout.p,
              _reference_activation(module), module.norm_first, module.norm1.eps,
              bias=module.linear1.bias is not None)
    new.self_attn = MultiHeadAttention.from_reference(attn)
    _copy_linear_and_norms(new, module, copied)
    return new



class FeedForward(nn.Module):
    """The position-wise feed-forward network FFN(x) = act(x W₁ + b₁) W₂ + b₂: ``(..., d_model)`` → same shape.

    The same two linear maps act at every position alike; ``dropout`` drops the hidden activations.
    """

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0, activation: str = "relu",
                 bias: bool = True):
        super().__init__()
        self.activation_name = activation
        self.activation = _activation(activation)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


def residual(x: Tensor, norm: nn.Module, sublayer: Callable[[Tensor], tuple[Tensor, Tensor | None]],
             norm_first: bool) -> tuple[Tensor, Tensor | None]:
    """One sublayer in its residual connection: ``x + Sublayer(norm(x))`` if ``norm_first``, else
    ``norm(x + Sublayer(x))``. ``sublayer(h)`` returns ``(output, attention weights or None)``; so does this."""
    if norm_first:
        out, weights = sublayer(norm(x))
        return x + out, weights
    out, weights = sublayer(x)
    return norm(x + out), weights


class _TransformerLayer(nn.Module):
    """What both layer types share: the self-attention and feed-forward sublayers, and torch's names for them.

    ``linear1``, ``linear2``, ``dropout`` (inside the feed-forward network) and ``activation_name`` read the
    parts of ``feed_forward`` under the names of `torch.nn.TransformerEncoderLayer`; state dicts written with
    those flat names (``linear1.weight``, ...) load too.
    """

    feed_forward: FeedForward

    def __init__(self) -> None:
        super().__init__()
        self.register_load_state_dict_pre_hook(_nest_feed_forward_keys)

    linear1 = property(lambda self: self.feed_forward.linear1)
    linear2 = property(lambda self: self.feed_forward.linear2)
    dropout = property(lambda self: self.feed_forward.dropout)
    activation_name = property(lambda self: self.feed_forward.activation_name)

    def _sa_block(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The self-attention sublayer: output after its residual dropout, and the weights."""
        out, weights = self.self_attn(x, x, x, mask=mask)
        return self.dropout1(out), weights

    def _ff_block(self, x: Tensor) -> Tensor:
        """The feed-forward sublayer's output before its residual dropout (torch's name for it)."""
        return self.feed_forward(x)


def _nest_feed_forward_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Rename torch-style flat keys ``{prefix}linear1.weight`` to ``{prefix}feed_forward.linear1.weight``."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        name = key[len(prefix):]
        if name.split(".")[0] in ("linear1", "linear2"):
            state_dict[f"{prefix}feed_forward.{name}"] = state_dict.pop(key)


class EncoderLayer(_TransformerLayer):
    """Self-attention then a feed-forward network, each wrapped in a residual connection and LayerNorm.

    ``forward(x, mask=None, need_weights=False)``: x ``(batch, n, d_model)``; ``mask`` boolean, True = may
    attend, broadcastable to ``(batch, heads, n, n)`` (e.g. `attnbook.core.key_mask` of the padding).
    Returns x, or ``(x, weights (batch, heads, n, n))`` when ``need_weights``.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, layer_norm_eps: float = 1e-5,
                 bias: bool = True):
        super().__init__()
        self.d_model, self.norm_first = d_model, norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, bias=bias, dropout=dropout)
        self.feed_forward = FeedForward(d_model, dim_feedforward, dropout, activation, bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        _check_input("x", x, self.d_model)
        x, weights = residual(x, self.norm1, lambda h: self._sa_block(h, mask), self.norm_first)
        x, _ = residual(x, self.norm2, lambda h: (self.dropout2(self.feed_forward(h)), None), self.norm_first)
        return (x, weights) if need_weights else x

    @classmethod
    def from_reference(cls, module: nn.TransformerEncoderLayer) -> "EncoderLayer":
        """Copy a `torch.nn.TransformerEncoderLayer` (build it with ``batch_first=True`` to compare outputs)."""
        new = _layer_from_reference(cls, module, nn.TransformerEncoderLayer, ("linear1", "linear2", "norm1", "norm2"))
        return new.to(module.linear1.weight.dtype)


class DecoderLayer(_TransformerLayer):
    """Masked self-attention, cross-attention to the encoder's memory, then a feed-forward network.

    ``forward(x, memory, self_mask=None, cross_mask=None, need_weights=False)``: x ``(batch, n_t, d_model)``,
    memory ``(batch, n_s, d_model)``; ``self_mask`` broadcastable to ``(batch, heads, n_t, n_t)`` (causal
    and padding), ``cross_mask`` to ``(batch, heads, n_t, n_s)``. Returns x, or ``(x, self_weights,
    cross_weights)`` when ``need_weights``.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, layer_norm_eps: float = 1e-5,
                 bias: bool = True):
        super().__init__()
        self.d_model, self.norm_first = d_model, norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, bias=bias, dropout=dropout)
        self.multihead_attn = MultiHeadAttention(d_model, num_heads, bias=bias, dropout=dropout)
        self.feed_forward = FeedForward(d_model, dim_feedforward, dropout, activation, bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def _mha_block(self, x: Tensor, memory: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        out, weights = self.multihead_attn(x, memory, memory, mask=mask)
        return self.dropout2(out), weights

    def forward(self, x: Tensor, memory: Tensor, self_mask: Tensor | None = None,
                cross_mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        _check_input("x", x, self.d_model)
        _check_input("memory", memory, self.d_model)
        if memory.shape[0] != x.shape[0]:
            raise ShapeError(f"memory: expected batch size {x.shape[0]} (x's), got shape {tuple(memory.shape)}")
        x, self_weights = residual(x, self.norm1, lambda h: self._sa_block(h, self_mask), self.norm_first)
        x, cross_weights = residual(x, self.norm2, lambda h: self._mha_block(h, memory, cross_mask), self.norm_first)
        x, _ = residual(x, self.norm3, lambda h: (self.dropout3(self.feed_forward(h)), None), self.norm_first)
        return (x, self_weights, cross_weights) if need_weights else x

    def extend(self, x: Tensor, past: tuple[Tensor, Tensor] | None, memory_kv: tuple[Tensor, Tensor],
               self_mask: Tensor | None, cross_mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """`forward` for new positions ``x`` ``(batch, n_new, d_model)`` after ``past`` ones (incremental decoding).

        ``past`` is this layer's self-attention keys and values of the earlier positions (None at the start),
        ``memory_kv`` the cross-attention's projected memory; ``self_mask`` spans past and new keys. Returns the
        new positions' output and the keys and values of all positions so far, for the next call.
        """
        kv: list[tuple[Tensor, Tensor]] = []

        def self_attention(h: Tensor) -> tuple[Tensor, Tensor]:
            k, v = self.self_attn.project_kv(h, h)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            kv.append((k, v))
            out, weights = self.self_attn.attend(h, k, v, mask=self_mask)
            return self.dropout1(out), weights

        x, _ = residual(x, self.norm1, self_attention, self.norm_first)
        x, _ = residual(x, self.norm2, lambda h: (self.dropout2(self.multihead_attn.attend(
            h, *memory_kv, mask=cross_mask)[0]), None), self.norm_first)
        x, _ = residual(x, self.norm3, lambda h: (self.dropout3(self.feed_forward(h)), None), self.norm_first)
        return x, kv[0]

    @classmethod
    def from_reference(cls, module: nn.TransformerDecoderLayer) -> "DecoderLayer":
        """Copy a `torch.nn.TransformerDecoderLayer` (build it with ``batch_first=True`` to compare outputs)."""
        new = _layer_from_reference(cls, module, nn.TransformerDecoderLayer,
                                    ("linear1", "linear2", "norm1", "norm2", "norm3"))
        new.multihead_attn = MultiHeadAttention.from_reference(module.multihead_attn)
        return new.to(module.linear1.weight.dtype)
