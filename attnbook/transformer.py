"""The Transformer of Vaswani et al. (2017), built on `attnbook.core.MultiHeadAttention`.

Layers mirror `torch.nn.TransformerEncoderLayer` / `TransformerDecoderLayer` (same submodule names, so that
``from_reference`` copies weights one to one), but every attention runs through the book's core and every
mask follows its convention: boolean, **True = may attend**, broadcastable to ``(batch, heads, n_q, n_k)``.
Shape legend: ``(batch, n, d_model)``; batch first throughout.

Post-norm (the paper): x = LayerNorm(x + Sublayer(x)). Pre-norm (``norm_first=True``): x = x + Sublayer(LayerNorm(x)).
The position-wise feed-forward network is FFN(x) = max(0, x W₁ + b₁) W₂ + b₂ (or GELU instead of max(0, ·)).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.core import MultiHeadAttention, causal_mask, key_mask
from attnbook.errors import ShapeError, check_ndim, check_tensor
from attnbook.positional import positional_encoding
from attnbook.train import fit

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


class _FeedForwardMixin:
    """The position-wise feed-forward block FFN(x) = act(x W₁ + b₁) W₂ + b₂ shared by both layer types."""

    def _init_feed_forward(self, d_model: int, dim_feedforward: int, dropout: float, activation: str,
                           bias: bool) -> None:
        self.d_model, self.activation_name = d_model, activation
        self.activation = _activation(activation)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class EncoderLayer(_FeedForwardMixin, nn.Module):
    """Self-attention then a feed-forward network, each wrapped in a residual connection and LayerNorm.

    ``forward(x, mask=None, need_weights=False)``: x ``(batch, n, d_model)``; ``mask`` boolean, True = may
    attend, broadcastable to ``(batch, heads, n, n)`` (e.g. `attnbook.core.key_mask` of the padding).
    Returns x, or ``(x, weights (batch, heads, n, n))`` when ``need_weights``.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, layer_norm_eps: float = 1e-5,
                 bias: bool = True):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, bias=bias, dropout=dropout)
        self._init_feed_forward(d_model, dim_feedforward, dropout, activation, bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def _sa_block(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        out, weights = self.self_attn(x, x, x, mask=mask)
        return self.dropout1(out), weights

    def forward(self, x: Tensor, mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        _check_input("x", x, self.d_model)
        if self.norm_first:
            attended, weights = self._sa_block(self.norm1(x), mask)
            x = x + attended
            x = x + self.dropout2(self._ff_block(self.norm2(x)))
        else:
            attended, weights = self._sa_block(x, mask)
            x = self.norm1(x + attended)
            x = self.norm2(x + self.dropout2(self._ff_block(x)))
        return (x, weights) if need_weights else x

    @classmethod
    def from_reference(cls, module: nn.TransformerEncoderLayer) -> "EncoderLayer":
        """Copy a `torch.nn.TransformerEncoderLayer` (build it with ``batch_first=True`` to compare outputs)."""
        new = _layer_from_reference(cls, module, nn.TransformerEncoderLayer, ("linear1", "linear2", "norm1", "norm2"))
        return new.to(module.linear1.weight.dtype)


class DecoderLayer(_FeedForwardMixin, nn.Module):
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
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, bias=bias, dropout=dropout)
        self.multihead_attn = MultiHeadAttention(d_model, num_heads, bias=bias, dropout=dropout)
        self._init_feed_forward(d_model, dim_feedforward, dropout, activation, bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def _sa_block(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        out, weights = self.self_attn(x, x, x, mask=mask)
        return self.dropout1(out), weights

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
        if self.norm_first:
            attended, self_weights = self._sa_block(self.norm1(x), self_mask)
            x = x + attended
            crossed, cross_weights = self._mha_block(self.norm2(x), memory, cross_mask)
            x = x + crossed
            x = x + self.dropout3(self._ff_block(self.norm3(x)))
        else:
            attended, self_weights = self._sa_block(x, self_mask)
            x = self.norm1(x + attended)
            crossed, cross_weights = self._mha_block(x, memory, cross_mask)
            x = self.norm2(x + crossed)
            x = self.norm3(x + self.dropout3(self._ff_block(x)))
        return (x, self_weights, cross_weights) if need_weights else x

    @classmethod
    def from_reference(cls, module: nn.TransformerDecoderLayer) -> "DecoderLayer":
        """Copy a `torch.nn.TransformerDecoderLayer` (build it with ``batch_first=True`` to compare outputs)."""
        new = _layer_from_reference(cls, module, nn.TransformerDecoderLayer,
                                    ("linear1", "linear2", "norm1", "norm2", "norm3"))
        new.multihead_attn = MultiHeadAttention.from_reference(module.multihead_attn)
        return new.to(module.linear1.weight.dtype)


class Encoder(nn.Module):
    """A stack of ``num_layers`` copies of an `EncoderLayer`, with an optional final LayerNorm (``norm``).

    ``forward(x, mask=None, need_weights=False)`` returns x, or ``(x, [weights per layer])``.
    """

    def __init__(self, layer: EncoderLayer, num_layers: int, norm: nn.LayerNorm | None = None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: expected at least 1, got {num_layers}")
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm

    def forward(self, x: Tensor, mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask, need_weights=True)
            weights.append(w)
        if self.norm is not None:
            x = self.norm(x)
        return (x, weights) if need_weights else x


class Decoder(nn.Module):
    """A stack of ``num_layers`` copies of a `DecoderLayer`, with an optional final LayerNorm (``norm``).

    ``forward(x, memory, self_mask=None, cross_mask=None, need_weights=False)`` returns x, or
    ``(x, [self weights per layer], [cross weights per layer])``.
    """

    def __init__(self, layer: DecoderLayer, num_layers: int, norm: nn.LayerNorm | None = None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: expected at least 1, got {num_layers}")
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm

    def forward(self, x: Tensor, memory: Tensor, self_mask: Tensor | None = None,
                cross_mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        self_weights, cross_weights = [], []
        for layer in self.layers:
            x, s, c = layer(x, memory, self_mask, cross_mask, need_weights=True)
            self_weights.append(s)
            cross_weights.append(c)
        if self.norm is not None:
            x = self.norm(x)
        return (x, self_weights, cross_weights) if need_weights else x


class Transformer(nn.Module):
    """Encoder-decoder on embedded sequences, the counterpart of `torch.nn.Transformer` (batch first).

    src ``(batch, n_s, d_model)``, tgt ``(batch, n_t, d_model)`` → ``(batch, n_t, d_model)``. Masks are
    boolean, True = may attend: ``src_mask`` broadcastable to ``(batch, heads, n_s, n_s)``, ``tgt_mask`` to
    ``(batch, heads, n_t, n_t)``, ``memory_mask`` to ``(batch, heads, n_t, n_s)``. Like torch's, both stacks
    end in a LayerNorm.
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, layer_norm_eps: float = 1e-5,
                 bias: bool = True):
        super().__init__()
        self.d_model, self.nhead = d_model, nhead
        args = (d_model, nhead, dim_feedforward, dropout, activation, norm_first, layer_norm_eps, bias)
        self.encoder = Encoder(EncoderLayer(*args), num_encoder_layers,
                               nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        self.decoder = Decoder(DecoderLayer(*args), num_decoder_layers,
                               nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias))

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        memory = self.encoder(src, src_mask)
        return self.decoder(tgt, memory, tgt_mask, memory_mask)

    @classmethod
    def from_reference(cls, module: nn.Transformer) -> "Transformer":
        """Copy a `torch.nn.Transformer` (built with ``batch_first=True`` to compare), final norms included."""
        if not isinstance(module, nn.Transformer):
            raise TypeError(f"module: expected torch.nn.Transformer, got {type(module).__name__}")
        first = module.encoder.layers[0]
        new = cls(module.d_model, module.nhead, len(module.encoder.layers), len(module.decoder.layers),
                  first.linear1.out_features, first.dropout.p, _reference_activation(first), first.norm_first,
                  first.norm1.eps, bias=first.linear1.bias is not None)
        new.encoder.layers = nn.ModuleList(EncoderLayer.from_reference(m) for m in module.encoder.layers)
        new.decoder.layers = nn.ModuleList(DecoderLayer.from_reference(m) for m in module.decoder.layers)
        for ours, theirs in ((new.encoder, module.encoder), (new.decoder, module.decoder)):
            ours.norm = None if theirs.norm is None else copy.deepcopy(theirs.norm)
        return new.to(first.linear1.weight.dtype)


# ---------------------------------------------------------------------------------------------------------
# Sequence to sequence: token embeddings, positions, masks, the loss and decoding.


def source_masks(src_valid: Tensor) -> tuple[Tensor, Tensor]:
    """Encoder self-attention and cross-attention masks from ``src_valid`` (batch, n_s): both hide padding.

    Returns ``(batch, 1, 1, n_s)`` masks (the same tensor twice, named for where each is used).
    """
    mask = key_mask(src_valid)
    return mask, mask


def target_mask(tgt_valid: Tensor) -> Tensor:
    """Decoder self-attention mask ``(batch, 1, n_t, n_t)``: causal (no peeking ahead) AND not padding."""
    check_tensor("tgt_valid", tgt_valid)
    check_ndim("tgt_valid", tgt_valid, 2, "(batch, n_t)")
    n = tgt_valid.shape[1]
    return causal_mask(n, device=tgt_valid.device)[None, None] & key_mask(tgt_valid)


def label_smoothing_loss(logits: Tensor, target: Tensor, smoothing: float = 0.1,
                         ignore_index: int = -100) -> Tensor:
    """Cross-entropy against a smoothed target: (1 - ε) on the true class plus ε spread evenly over all V.

    Szegedy et al. (2016), used by the Transformer with ε = 0.1. Equals
    ``F.cross_entropy(logits, target, label_smoothing=ε, ignore_index=...)``. logits ``(N, V)``, target ``(N,)``.
    """
    check_tensor("logits", logits)
    check_ndim("logits", logits, 2, "(N, vocab)")
    check_tensor("target", target)
    if target.shape != logits.shape[:1]:
        raise ShapeError(f"target: expected shape ({logits.shape[0]},) to match logits, got {tuple(target.shape)}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing: expected a value in [0, 1), got {smoothing}")
    keep = target != ignore_index
    log_probs = torch.log_softmax(logits[keep], dim=-1)
    nll = -log_probs.gather(-1, target[keep, None]).squeeze(-1)
    uniform = -log_probs.mean(dim=-1)
    return ((1.0 - smoothing) * nll + smoothing * uniform).mean()


class Seq2SeqTransformer(nn.Module):
    """A token-to-token Transformer: embeddings × √d_model, positional encoding, `Transformer`, output layer.

    src ``(batch, n_s)`` and tgt_in ``(batch, n_t)`` token ids (``pad_id`` for padding) → logits
    ``(batch, n_t, tgt_vocab)``. Padding and causal masks are built from the ids. ``positional`` is
    "sinusoidal" or "learned".
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 64, nhead: int = 4,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2, dim_feedforward: int = 128,
                 dropout: float = 0.1, pad_id: int = 0, max_len: int = 64, positional: str = "sinusoidal",
                 norm_first: bool = False):
        super().__init__()
        self.pad_id, self.d_model = pad_id, d_model
        self.src_embed = nn.Embedding(src_vocab, d_model, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model, padding_idx=pad_id)
        self.src_pos = positional_encoding(positional, d_model, max_len, dropout)
        self.tgt_pos = positional_encoding(positional, d_model, max_len, dropout)
        self.transformer = Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
                                       dropout, norm_first=norm_first)
        self.generator = nn.Linear(d_model, tgt_vocab)
        for embed in (self.src_embed, self.tgt_embed):  # std d^-1/2, so embeddings × √d have unit scale like PE
            nn.init.normal_(embed.weight, std=d_model**-0.5)
            embed.weight.data[pad_id] = 0.0

    def _embed(self, name: str, ids: Tensor, embed: nn.Embedding, pos: nn.Module) -> Tensor:
        check_tensor(name, ids)
        check_ndim(name, ids, 2, "(batch, n) token ids")
        return pos(embed(ids) * math.sqrt(self.d_model))

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Encode source ids; return the decoding context ``(memory (batch, n_s, d_model), src_valid)``."""
        src_valid = src != self.pad_id
        self_mask, _ = source_masks(src_valid)
        return self.transformer.encoder(self._embed("src", src, self.src_embed, self.src_pos), self_mask), src_valid

    def decode(self, context: tuple[Tensor, Tensor], tgt_in: Tensor,
               need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        """Logits ``(batch, n_t, tgt_vocab)`` for target prefix ids; with ``need_weights`` also the weights."""
        memory, src_valid = context
        _, cross_mask = source_masks(src_valid)
        x = self._embed("tgt_in", tgt_in, self.tgt_embed, self.tgt_pos)
        out = self.transformer.decoder(x, memory, target_mask(tgt_in != self.pad_id), cross_mask,
                                       need_weights=need_weights)
        if need_weights:
            return self.generator(out[0]), out[1], out[2]
        return self.generator(out)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decode(self.encode(src), tgt_in)

    def next_log_probs(self, context: tuple[Tensor, Tensor], prefix: Tensor) -> Tensor:
        """Log-probabilities ``(batch, tgt_vocab)`` of the next token after ``prefix`` (batch, t)."""
        return torch.log_softmax(self.decode(context, prefix)[:, -1], dim=-1)


# ---------------------------------------------------------------------------------------------------------
# Decoding. A model offers ``encode(src) -> context`` (a tuple of batch-first tensors) and
# ``next_log_probs(context, prefix) -> (batch, vocab)``; the GRU models of `attnbook.rnn` do too.


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


# ---------------------------------------------------------------------------------------------------------
# Training and evaluating any of the book's sequence-to-sequence models on (src, tgt) id batches.


def warmup_then_decay(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate rising linearly for ``warmup`` steps, then falling linearly to 5% at step ``total``.

    A short, CPU-friendly stand-in for the paper's schedule lr ∝ min(step^-0.5, step · warmup^-1.5).
    """
    if not 0 < warmup < total:
        raise ValueError(f"warmup: expected 0 < warmup < total={total}, got {warmup}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.05, (total - step) / (total - warmup)))
    )


def train_seq2seq(model: nn.Module, batches: Callable[[], Sequence[tuple[Tensor, Tensor]]], epochs: int,
                  lr: float = 3e-3, warmup: int = 100, smoothing: float = 0.1, pad_id: int = 0,
                  desc: str = "training") -> list[float]:
    """Teacher-forced training with Adam (β₂ = 0.98), warm-up, label smoothing and gradient clipping.

    ``batches()`` yields ``(src (batch, n_s), tgt (batch, n_t))`` with tgt = BOS … EOS; the model sees
    ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``. Returns the mean loss of each epoch.
    """
    steps_per_epoch = sum(1 for _ in batches())
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    scheduler = warmup_then_decay(optimizer, warmup, epochs * steps_per_epoch)

    def loss_fn(batch: tuple[Tensor, Tensor]) -> Tensor:
        src, tgt = batch
        logits = model(src, tgt[:, :-1])
        return label_smoothing_loss(logits.flatten(0, 1), tgt[:, 1:].flatten(), smoothing, ignore_index=pad_id)

    return fit(model, optimizer, batches, loss_fn, epochs, clip_norm=1.0, scheduler=scheduler, desc=desc)


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
