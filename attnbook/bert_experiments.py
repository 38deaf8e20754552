"""Chapter 4's experiments, as functions: model sizes, pretrained against from-scratch fine-tuning, and the
mirror task that separates a bidirectional reading from a causal one.

`count_parameters` builds a model on PyTorch's "meta" device (shapes only, no memory), so BERT-base's 110M
parameters are counted in milliseconds. `compare_fine_tuning` fine-tunes one classifier per seed from the
pretrained body and one from random weights, with the same head and batch order. `mirror_accuracy` trains the
same mini-BERT with and without the causal mask on `attnbook.data.text.mirror_task`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from attnbook.bert import (BertConfig, BertForPreTraining, BertForSequenceClassification, BertModel,
                           classification_accuracy, fine_tune, masked_lm_accuracy, pretrain)
from attnbook.errors import check_shape


def count_parameters(build: Callable[[], nn.Module]) -> int:
    """Number of parameters of ``build()``, built on the meta device (no weights are allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def compare_fine_tuning(body: BertModel, config: BertConfig, train: dict[str, Tensor], train_labels: Tensor,
                        test: dict[str, Tensor], test_labels: Tensor, seeds: Sequence[int], epochs: int,
                        lr: float) -> dict[str, list[float]]:
    """Test accuracy per seed of a classifier fine-tuned from ``body`` ("pretrained") and of the same
    architecture from random weights ("from scratch"). Inputs are encoded ``(n, length)`` tensors."""
    check_shape("train_labels", train_labels, (train["input_ids"].shape[0],))
    check_shape("test_labels", test_labels, (test["input_ids"].shape[0],))
    results: dict[str, list[float]] = {"pretrained": [], "from scratch": []}
    for seed in seeds:
        for start in results:
            torch.manual_seed(seed)  # the same classifier head and batch order for both contenders
            classifier = (BertForSequenceClassification.from_pretrained_body(body) if start == "pretrained"
                          else BertForSequenceClassification(config))
            fine_tune(classifier, train, train_labels, epochs=epochs, lr=lr, desc=f"{start}, seed {seed}")
            results[start].append(classification_accuracy(classifier, test, test_labels))
    return results


def mirror_accuracy(inputs: Tensor, labels: Tensor, steps: int, is_decoder: bool, vocab_size: int = 16,
                    n_test: int = 1000, batch: int = 64, lr: float = 3e-3, seed: int = 2) -> float:
    """Masked-LM accuracy on the first ``n_test`` rows after ``steps`` steps on the rows after them.

    inputs and labels ``(n, 2·length)`` from `mirror_task`; the model is a 2-layer, 32-wide mini-BERT,
    causal when ``is_decoder``.
    """
    check_shape("labels", labels, tuple(inputs.shape))
    if inputs.shape[0] < n_test + steps * batch:
        raise ValueError(f"inputs: expected at least {n_test + steps * batch} rows, got {inputs.shape[0]}")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=inputs.shape[1], hidden_dropout_prob=0.0,
                        is_decoder=is_decoder)
    model = BertForPreTraining(config)

    def sample(step: int) -> tuple[Tensor, None, None, Tensor, None]:
        rows = slice(n_test + step * batch, n_test + (step + 1) * batch)
        return inputs[rows], None, None, labels[rows], None

    def evaluate() -> float:
        return masked_lm_accuracy(model, inputs[:n_test], labels[:n_test])

    _, curve = pretrain(model, sample, steps, evaluate, eval_every=steps, lr=lr,
                        desc="causal" if is_decoder else "bidirectional")
    return curve[-1]
