"""Chapter 4's experiment helpers: parameter counts on the meta device, the fine-tuning comparison, the mirror task."""

import pytest
import torch

from attnbook.bert import BertConfig, BertModel
from attnbook.bert_experiments import compare_fine_tuning, count_parameters, mirror_accuracy
from attnbook.data.text import mirror_task
from attnbook.errors import ShapeError


def test_count_parameters_equals_a_real_count_and_bert_base_is_110m():
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4)
    assert count_parameters(lambda: BertModel(config)) == sum(p.numel() for p in BertModel(config).parameters())
    base = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072, max_position_embeddings=512)
    assert 108e6 < count_parameters(lambda: BertModel(base)) < 111e6  # Devlin et al.: 110M


def test_compare_fine_tuning_runs_both_contenders_per_seed_and_checks_labels():
    config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=6)
    ids = torch.randint(5, 20, (12, 6), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids)}
    labels = (ids[:, 0] > 12).long()
    results = compare_fine_tuning(BertModel(config), config, batch, labels, batch, labels, [0, 1], 1, 1e-3)
    assert set(results) == {"pretrained", "from scratch"} and all(len(v) == 2 for v in results.values())
    with pytest.raises(ShapeError, match="train_labels"):
        compare_fine_tuning(BertModel(config), config, batch, labels[:5], batch, labels, [0], 1, 1e-3)


def test_mirror_accuracy_checks_its_inputs():
    inputs, labels = mirror_task(40, length=2, vocab_size=8)
    with pytest.raises(ShapeError, match="labels"):
        mirror_accuracy(inputs, labels[:, :3], steps=1, is_decoder=False, vocab_size=8, n_test=8, batch=4)
    with pytest.raises(ValueError, match="rows"):
        mirror_accuracy(inputs, labels, steps=100, is_decoder=False, vocab_size=8, n_test=8, batch=4)
    assert 0 <= mirror_accuracy(inputs, labels, steps=2, is_decoder=True, vocab_size=8, n_test=8, batch=4) <= 1
