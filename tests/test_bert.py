"""BERT against `transformers` with copied weights, its causal variant, the heads, MiniLM, and the errors."""

import pytest
import torch
import transformers

from attnbook.bert import (
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
    classification_accuracy,
    fine_tune,
    hf_to_attnbook,
    load_minilm,
    masked_lm_accuracy,
    mean_pool,
    minilm_dir,
    pretrain,
    pretraining_loss,
    sentence_embeddings,
    set_unigram_prior,
)
from attnbook.errors import DTypeError, ShapeError
from attnbook.transformer import EncoderLayer


def hf_config(is_decoder: bool = False) -> transformers.BertConfig:
    return transformers.BertConfig(vocab_size=37, hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                                   intermediate_size=40, max_position_embeddings=16, is_decoder=is_decoder,
                                   attn_implementation="eager")


def inputs(batch: int = 3, n: int = 11, vocab: int = 37):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (batch, n), generator=generator)
    types = torch.randint(0, 2, (batch, n), generator=generator)
    mask = torch.ones(batch, n, dtype=torch.long)
    mask[1, 7:] = 0  # a padded sequence
    mask[2, 4:] = 0
    return ids, types, mask


@pytest.mark.parametrize("is_decoder", [False, True], ids=["bidirectional", "causal"])
def test_matches_transformers_bert_model(is_decoder):
    torch.manual_seed(0)
    reference = transformers.BertModel(hf_config(is_decoder)).eval()
    ours = BertModel.from_reference(reference)
    ids, types, mask = inputs()
    with torch.no_grad():
        expected = reference(input_ids=ids, token_type_ids=types, attention_mask=mask, output_attentions=True,
                             use_cache=False)
        actual = ours(ids, types, mask)
    torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state)
    torch.testing.assert_close(actual.pooler_output, expected.pooler_output)
    assert len(actual.attentions) == len(expected.attentions) == 3
    for ours_w, theirs_w in zip(actual.attentions, expected.attentions):
        assert ours_w.shape == (3, 4, 11, 11)
        torch.testing.assert_close(ours_w, theirs_w)


def test_encoder_reuses_the_transformer_layers():
    model = BertModel(BertConfig(vocab_size=20, hidden_size=16, num_attention_heads=2))
    assert all(isinstance(layer, EncoderLayer) for layer in model.encoder.layers)
    layer = model.encoder.layers[0]
    assert layer.activation_name == "gelu" and not layer.norm_first and layer.norm1.eps == 1e-12


def test_pretraining_heads_match_transformers():
    torch.manual_seed(0)
    reference = transformers.BertForPreTraining(hf_config()).eval()
    ours = BertForPreTraining.from_reference(reference)
    ids, types, mask = inputs()
    with torch.no_grad():
        expected = reference(input_ids=ids, token_type_ids=types, attention_mask=mask)
        actual = ours(ids, types, mask)
        picked = ours(ids, types, mask, mlm_positions=mask.bool())
    torch.testing.assert_close(actual.mlm_logits, expected.prediction_logits)
    torch.testing.assert_close(actual.nsp_logits, expected.seq_relationship_logits)
    torch.testing.assert_close(picked.mlm_logits, expected.prediction_logits[mask.bool()])
    assert ours.mlm.decoder.weight is ours.bert.embeddings.word_embeddings.weight  # tied


def test_pretraining_loss_matches_transformers():
    torch.manual_seed(0)
    reference = transformers.BertForPreTraining(hf_config()).eval()
    ours = BertForPreTraining.from_reference(reference)
    ids, types, mask = inputs()
    labels = torch.where(torch.rand(ids.shape) < 0.3, ids, torch.full_like(ids, -100))
    labels[0, 0] = ids[0, 0]
    nsp = torch.tensor([0, 1, 1])
    with torch.no_grad():
        expected = reference(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels,
                             next_sentence_label=nsp).loss
        actual = pretraining_loss(ours(ids, types, mask), labels, nsp)
        positions = labels != -100
        picked = pretraining_loss(ours(ids, types, mask, mlm_positions=positions), labels[positions], nsp)
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(picked, expected)


def test_sequence_classifier_matches_transformers_and_copies_a_body():
    torch.manual_seed(0)
    reference = transformers.BertForSequenceClassification(hf_config()).eval()
    ours = BertForSequenceClassification.from_reference(reference)
    ids, types, mask = inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, types, mask), reference(input_ids=ids, token_type_ids=types,
                                                                     attention_mask=mask).logits)
    body = ours.bert
    fresh = BertForSequenceClassification.from_pretrained_body(body, num_labels=3).eval()
    assert fresh.bert is not body
    assert torch.equal(fresh.bert.embeddings.word_embeddings.weight, body.embeddings.word_embeddings.weight)
    assert fresh(ids, types, mask).shape == (3, 3)
    with pytest.raises(TypeError, match="bert"):
        BertForSequenceClassification.from_pretrained_body(torch.nn.Linear(2, 2))


def test_causal_variant_ignores_the_right_context():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=16, num_attention_heads=2, hidden_dropout_prob=0.0)
    causal = BertModel(BertConfig(**{**config.__dict__, "is_decoder": True})).eval()
    bidirectional = BertModel(config).eval()
    bidirectional.load_state_dict(causal.state_dict())  # the same blocks, only the mask differs
    ids = torch.randint(5, 30, (2, 9))
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 30
    with torch.no_grad():
        a, b = causal(ids), causal(changed)
        torch.testing.assert_close(a.last_hidden_state[:, :6], b.last_hidden_state[:, :6])
        assert not torch.allclose(bidirectional(ids).last_hidden_state[:, :6],
                                  bidirectional(changed).last_hidden_state[:, :6])
    for weights in a.attentions:
        assert (weights.triu(diagonal=1) == 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 9))


def test_padding_gets_no_attention_and_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_attention_heads=2)).eval()
    ids = torch.randint(5, 30, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    with torch.no_grad():
        short, long = model(ids), model(padded, attention_mask=mask)
    torch.testing.assert_close(long.last_hidden_state[:, :6], short.last_hidden_state)
    assert all((w[..., 6:] == 0).all() for w in long.attentions)


def test_parameter_names_map_onto_transformers():
    assert hf_to_attnbook("encoder.layer.3.attention.self.query.weight") == "encoder.layers.3.self_attn.q_proj.weight"
    assert hf_to_attnbook("encoder.layer.0.attention.output.dense.bias") == "encoder.layers.0.self_attn.out_proj.bias"
    assert hf_to_attnbook("encoder.layer.0.attention.output.LayerNorm.weight") == "encoder.layers.0.norm1.weight"
    assert hf_to_attnbook("encoder.layer.0.intermediate.dense.weight") == "encoder.layers.0.feed_forward.linear1.weight"
    assert hf_to_attnbook("encoder.layer.0.output.dense.weight") == "encoder.layers.0.feed_forward.linear2.weight"
    assert hf_to_attnbook("encoder.layer.0.output.LayerNorm.bias") == "encoder.layers.0.norm2.bias"
    assert hf_to_attnbook("embeddings.position_ids") is None


def test_config_rejects_what_it_cannot_copy():
    with pytest.raises(ValueError, match="hidden_act"):
        BertConfig.from_reference(transformers.BertConfig(hidden_act="relu"))
    with pytest.raises(TypeError, match="BertModel"):
        BertModel.from_reference(torch.nn.Linear(2, 2))
    look_alike = type("BertModel", (torch.nn.Module,), {})()  # the class name alone does not make a reference
    with pytest.raises(TypeError, match="transformers.BertModel"):
        BertModel.from_reference(look_alike)


def test_self_attention_mask_hides_padding_and_for_the_decoder_the_future():
    sizes = dict(vocab_size=30, hidden_size=16, num_attention_heads=2, max_position_embeddings=8)
    encoder, decoder = BertModel(BertConfig(**sizes)), BertModel(BertConfig(**sizes, is_decoder=True))
    attention_mask = torch.tensor([[1, 1, 0]])
    assert encoder.self_attention_mask(attention_mask).tolist() == [[[[True, True, False]]]]
    assert decoder.self_attention_mask(attention_mask).tolist() == [[[[True, False, False], [True, True, False],
                                                                       [True, True, False]]]]
    assert not hasattr(encoder, "attention_mask")  # one name for one thing: forward's argument


def test_input_errors_name_the_argument():
    model = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_attention_heads=2, max_position_embeddings=8))
    ids = torch.randint(0, 30, (2, 5))
    with pytest.raises(ShapeError, match="input_ids"):
        model(ids[0])
    with pytest.raises(DTypeError, match="input_ids"):
        model(ids.float())
    with pytest.raises(ShapeError, match="attention_mask"):
        model(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ShapeError, match="token_type_ids"):
        model(ids, token_type_ids=torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ShapeError, match="max_position_embeddings"):
        model(torch.randint(0, 30, (1, 9)))
    with pytest.raises(TypeError, match="input_ids"):
        model([[1, 2, 3]])
    pretraining = BertForPreTraining(model.config)
    with pytest.raises(ShapeError, match="mlm_positions"):
        pretraining(ids, mlm_positions=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ShapeError, match="attention_mask"):
        mean_pool(torch.zeros(2, 5, 16), torch.ones(2, 4))


def test_mean_pool_averages_real_tokens_only():
    hidden = torch.arange(12.0).reshape(1, 4, 3)
    torch.testing.assert_close(mean_pool(hidden, torch.tensor([[1, 1, 0, 0]])), torch.tensor([[1.5, 2.5, 3.5]]))


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


SENTENCES = ["A man is playing a guitar.", "Someone plays an instrument on stage.",
             "The stock market fell sharply today.", "Attention is a weighted average of values."]


def test_minilm_matches_transformers_on_real_sentences(minilm):
    model, tokenizer = minilm
    reference = transformers.BertModel.from_pretrained(str(minilm_dir()), attn_implementation="eager",
                                                       local_files_only=True).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = reference(**batch, output_attentions=True)
        actual = model(**batch)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=1e-4)
    for ours_w, theirs_w in zip(actual.attentions, expected.attentions, strict=True):
        assert ours_w.shape == (4, 12, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
        torch.testing.assert_close(ours_w, theirs_w, atol=1e-5, rtol=1e-4)


def test_minilm_sentence_embeddings_match_sentence_transformers(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model, tokenizer = minilm
    reference = sentence_transformers.SentenceTransformer(str(minilm_dir()), device="cpu")
    expected = torch.as_tensor(reference.encode(SENTENCES, normalize_embeddings=True))
    actual = sentence_embeddings(model, tokenizer, SENTENCES)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    similarity = actual @ actual.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # the two music sentences are closest


def test_unigram_prior_makes_the_untrained_model_predict_frequencies():
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=12, hidden_size=16, num_attention_heads=2)).eval()
    counts = torch.tensor([0, 0, 0, 0, 0, 50, 30, 10, 5, 3, 1, 1])
    set_unigram_prior(model, counts)
    probs = torch.softmax(model.mlm.decoder.bias, -1)
    torch.testing.assert_close(probs, (counts + 1) / (counts + 1).sum())
    ids = torch.randint(5, 12, (4, 6))
    with torch.no_grad():
        assert (model(ids).mlm_logits.argmax(-1) == 5).float().mean() > 0.9
    with pytest.raises(ShapeError, match="token_counts"):
        set_unigram_prior(model, counts[:5])


def test_pretrain_learns_a_copy_task_and_fine_tune_fits_labels():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=12, hidden_size=32, num_attention_heads=2,
                                          max_position_embeddings=8, hidden_dropout_prob=0.0))
    ids = torch.randint(5, 12, (2000, 6), generator=generator)
    inputs = ids.clone()
    inputs[:, 3] = 4  # position 3 is hidden; its answer is the token at position 0
    ids[:, 3] = ids[:, 0]
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]

    def sample(step):
        rows = slice(200 + 32 * step, 200 + 32 * (step + 1))
        return inputs[rows], None, None, labels[rows], None

    steps, scores = pretrain(model, sample, 50, lambda: masked_lm_accuracy(model, inputs[:200], labels[:200]),
                             eval_every=25, lr=5e-3)
    assert steps == [0, 25, 50] and len(scores) == 3
    assert scores[-1] > 0.5 > scores[0] + 0.2, scores
    with pytest.raises(ValueError, match="steps"):
        pretrain(model, sample, 10, lambda: 0.0, eval_every=25)

    classifier = BertForSequenceClassification(BertConfig(vocab_size=12, hidden_size=16, num_attention_heads=2,
                                                          max_position_embeddings=8, hidden_dropout_prob=0.0))
    batch = {"input_ids": ids[:64], "token_type_ids": torch.zeros_like(ids[:64]),
             "attention_mask": torch.ones_like(ids[:64])}
    target = (ids[:64, 0] > 8).long()
    losses = fine_tune(classifier, batch, target, epochs=30, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    assert classification_accuracy(classifier, batch, target) > 0.9
