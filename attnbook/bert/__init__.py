"""BERT (Devlin et al. 2019), chapter 4, in small modules built on the Transformer chapter's layers.

`model` (the encoder: `BertConfig`, `BertModel`), `heads` (masked-LM and next-sentence pretraining, sequence
classification), `names` (HuggingFace's parameter names → ours, for ``from_reference``), `minilm` (the real
all-MiniLM-L6-v2 weights and sentence embeddings) and `training` (pretraining and fine-tuning through
`attnbook.train.fit`). Every public name is importable from ``attnbook.bert``.
"""

from attnbook.bert.heads import (BertForPreTraining, BertForSequenceClassification, MaskedLMHead,
                                 PreTrainingOutput, pretraining_loss, set_unigram_prior)
from attnbook.bert.minilm import load_minilm, mean_pool, minilm_dir, sentence_embeddings
from attnbook.bert.model import BertConfig, BertEmbeddings, BertModel, BertOutput, BertPooler, init_weights
from attnbook.bert.names import check_reference_class, hf_to_attnbook, load_reference_state
from attnbook.bert.training import classification_accuracy, fine_tune, masked_lm_accuracy, pretrain

__all__ = [
    "BertConfig", "BertEmbeddings", "BertForPreTraining", "BertForSequenceClassification", "BertModel",
    "BertOutput", "BertPooler", "MaskedLMHead", "PreTrainingOutput", "check_reference_class",
    "classification_accuracy", "fine_tune", "hf_to_attnbook", "init_weights", "load_minilm",
    "load_reference_state", "masked_lm_accuracy", "mean_pool", "minilm_dir", "pretrain", "pretraining_loss",
    "sentence_embeddings", "set_unigram_prior",
]
