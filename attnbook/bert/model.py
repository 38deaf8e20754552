"""BERT's encoder (Devlin et al. 2019), chapter 4: embeddings, a post-norm GELU encoder and the pooler.

The encoder is a stack of the Transformer chapter's `attnbook.transformer.EncoderLayer`, so every attention
runs through `attnbook.core`. Setting ``is_decoder=True`` in the config gives the GPT-style variant: the same
blocks under a causal mask, each token reading only itself and what lies to its left.

Inputs follow HuggingFace: ``input_ids``, ``token_type_ids`` and ``attention_mask`` (1 = token, 0 = padding),
all ``(batch, n)``. Shape legend: ``(batch, n, hidden)`` states, ``(batch, heads, n, n)`` attention weights.
Parameter names map one to one onto HuggingFace's (`attnbook.bert.names`), so ``from_reference`` copies a
`transformers` model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnbook.bert.names import check_reference_class, load_reference_state
from attnbook.core import causal_mask, key_mask
from attnbook.errors import DTypeError, ShapeError, check_ndim, check_tensor
from attnbook.transformer import Encoder, EncoderLayer


@dataclass
class BertConfig:
    """The sizes of a BERT, named as in `transformers.BertConfig` (BERT-base: 768 wide, 12 layers, 12 heads)."""

    vocab_size: int
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 256
    max_position_embeddings: int = 64
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    pad_token_id: int = 0
    is_decoder: bool = False  # True: causal self-attention, the GPT-style reading

    @classmethod
    def from_reference(cls, config: Any) -> "BertConfig":
        """Read a `transformers.BertConfig` (absolute positions and exact GELU only)."""
        if getattr(config, "hidden_act", "gelu") != "gelu":
            raise ValueError(f"config: hidden_act {config.hidden_act!r} has no counterpart here (expected 'gelu')")
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"config: position_embedding_type {config.position_embedding_type!r} is not supported")
        names = [f for f in cls.__dataclass_fields__ if f != "is_decoder"]
        return cls(**{f: getattr(config, f) for f in names}, is_decoder=bool(getattr(config, "is_decoder", False)))


@dataclass
class BertOutput:
    """What `BertModel` returns: states ``(batch, n, hidden)``, pooled ``(batch, hidden)``, weights per layer."""

    last_hidden_state: Tensor
    pooler_output: Tensor | None
    attentions: tuple[Tensor, ...]


class BertEmbeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm and dropout: ids ``(batch, n)`` → ``(batch, n, hidden)``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(x))


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence summary that the next-sentence and classification heads read."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


def _check_ids(name: str, ids: object, shape: tuple[int, ...] | None = None) -> Tensor:
    ids = check_tensor(name, ids)
    check_ndim(name, ids, 2, "(batch, n)")
    if shape is not None and tuple(ids.shape) != shape:
        raise ShapeError(f"{name}: expected shape {shape} (input_ids'), got {tuple(ids.shape)}")
    if ids.dtype not in (torch.long, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool):
        raise DTypeError(f"{name}: expected an integer tensor, got {ids.dtype}")
    return ids


class BertModel(nn.Module):
    """The BERT encoder: `BertEmbeddings`, a stack of post-norm GELU `EncoderLayer` s, and a `BertPooler`.

    ``forward(input_ids, token_type_ids=None, attention_mask=None)`` with ``(batch, n)`` tensors returns a
    `BertOutput`. ``config.is_decoder`` makes every layer causal (GPT's left-to-right reading).
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        layer = EncoderLayer(config.hidden_size, config.num_attention_heads, config.intermediate_size,
                             config.hidden_dropout_prob, activation="gelu", norm_first=False,
                             layer_norm_eps=config.layer_norm_eps)
        self.encoder = Encoder(layer, config.num_hidden_layers)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(init_weights)

    def self_attention_mask(self, attention_mask: Tensor) -> Tensor:
        """HuggingFace's ``(batch, n)`` 1/0 ``attention_mask`` → the layers' boolean mask (True = may attend).

        ``(batch, 1, 1, n)`` (padding keys hidden), or ``(batch, 1, n, n)`` with the causal mask as well.
        """
        mask = key_mask(attention_mask.bool())
        if self.config.is_decoder:
            n = attention_mask.shape[1]
            mask = mask & causal_mask(n, device=attention_mask.device)
        return mask


    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> BertOutput:
        input_ids = _check_ids("input_ids", input_ids)
        shape = tuple(input_ids.shape)
        if shape[1] > self.config.max_position_embeddings:
            raise ShapeError(f"input_ids: expected at most max_position_embeddings="
                             f"{self.config.max_position_embeddings} positions, got shape {shape}")
        token_type_ids = (torch.zeros_like(input_ids) if token_type_ids is None
                          else _check_ids("token_type_ids", token_type_ids, shape))
        attention_mask = (torch.ones_like(input_ids) if attention_mask is None
                          else _check_ids("attention_mask", attention_mask, shape))
        x = self.embeddings(input_ids.long(), token_type_ids.long())
        x, weights = self.encoder(x, self.self_attention_mask(attention_mask), need_weights=True)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BertOutput(last_hidden_state=x, pooler_output=pooled, attentions=tuple(weights))

    @classmethod
    def from_reference(cls, module: Any) -> "BertModel":
        """Copy a `transformers.BertModel` (its config's ``is_decoder`` picks the causal variant)."""
        check_reference_class(module, "BertModel")
        return load_reference_state(cls(BertConfig.from_reference(module.config), module.pooler is not None),
                           module.state_dict())


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: weights N(0, 0.02²), biases 0, LayerNorm the identity (use with ``Module.apply``)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

