"""BERT's heads (chapter 4): masked-LM and next-sentence prediction for pretraining, a classifier for fine-tuning.

Masked-LM logits are scores against the tied token embeddings; `set_unigram_prior` starts their bias at the
log-frequency of each token, and `pretraining_loss` adds the two pretraining losses.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.bert.model import BertConfig, BertModel, BertOutput, init_weights
from attnbook.bert.names import check_reference_class, load_reference_state
from attnbook.data.text import IGNORE_INDEX
from attnbook.errors import ShapeError, check_tensor


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
        check_reference_class(module, "BertForPreTraining")
        return load_reference_state(cls(BertConfig.from_reference(module.config)), module.state_dict())


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
        check_reference_class(module, "BertForSequenceClassification")
        return load_reference_state(cls(BertConfig.from_reference(module.config), module.num_labels), module.state_dict())
