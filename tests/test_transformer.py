"""The Transformer against torch.nn.Transformer* with copied weights, plus masks, positions, loss and decoding."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from attnbook.core import causal_mask, key_mask, padding_mask
from attnbook.errors import DTypeError, ShapeError
from attnbook.positional import (LearnedPositionalEncoding, SinusoidalPositionalEncoding, positional_encoding,
                                 shift_matrix, sinusoidal_table)
from attnbook.transformer import (Decoder, DecoderLayer, Encoder, EncoderLayer, FeedForward, Seq2SeqTransformer,
                                  Transformer, beam_search, exact_match, greedy_decode, label_smoothing_loss, residual,
                                  target_mask, train_seq2seq, warmup_then_decay)

D, H, FF = 12, 3, 20  # odd sizes on purpose
LENGTHS = torch.tensor([7, 4, 1])


def torch_causal(n):
    """torch's convention: True = masked out."""
    return ~causal_mask(n)


@pytest.mark.parametrize("norm_first,activation", list(itertools.product([False, True], ["relu", "gelu"])))
def test_encoder_layer_matches_torch_with_padding(norm_first, activation):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=activation, batch_first=True,
                                     norm_first=norm_first, layer_norm_eps=1e-6).eval()
    ours = EncoderLayer.from_reference(ref).eval()
    x = torch.randn(3, 7, D)
    valid = padding_mask(LENGTHS, 7)
    expected = ref(x, src_key_padding_mask=~valid)
    actual = ours(x, mask=key_mask(valid))
    assert_close(actual[valid], expected[valid], atol=1e-5, rtol=1e-5)  # torch's fast path zeroes padding rows
    assert ours.norm1.eps == 1e-6 and ours.activation_name == activation


def test_encoder_layer_weights_match_torch_attention():
    torch.manual_seed(1)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True).eval()
    ours = EncoderLayer.from_reference(ref).eval()
    x = torch.randn(2, 5, D)
    _, expected = ref.self_attn(x, x, x, need_weights=True, average_attn_weights=False)
    out, weights = ours(x, need_weights=True)
    assert weights.shape == (2, H, 5, 5) and out.shape == x.shape
    assert_close(weights, expected, atol=1e-6, rtol=1e-5)


def test_encoder_layer_gelu_is_exact_erf_gelu_and_bias_false():
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu", batch_first=True, bias=False).eval()
    ours = EncoderLayer.from_reference(ref).eval()
    assert ours.linear1.bias is None and ours.norm1.bias is None
    x = torch.randn(2, 4, D)
    assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer.from_reference(nn.TransformerEncoderLayer(D, H, FF, activation=nn.GELU("tanh"),
                                                               batch_first=True))


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch_with_causal_and_padding_masks(norm_first):
    torch.manual_seed(2)
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    ours = DecoderLayer.from_reference(ref).eval()
    x, memory = torch.randn(3, 6, D), torch.randn(3, 7, D)
    tgt_valid, src_valid = padding_mask(torch.tensor([6, 3, 2]), 6), padding_mask(LENGTHS, 7)
    expected = ref(x, memory, tgt_mask=torch_causal(6), tgt_key_padding_mask=~tgt_valid,
                   memory_key_padding_mask=~src_valid)
    actual, self_w, cross_w = ours(x, memory, self_mask=target_mask(tgt_valid), cross_mask=key_mask(src_valid),
                                   need_weights=True)
    assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    assert self_w.shape == (3, H, 6, 6) and cross_w.shape == (3, H, 6, 7)
    assert torch.all(self_w.triu(1) == 0)  # nothing attends ahead
    assert torch.all(cross_w[2, :, :, 1:] == 0)  # the third source has one real token


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_matches_torch(norm_first):
    torch.manual_seed(3)
    ref = nn.Transformer(D, H, 2, 3, FF, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    ours = Transformer.from_reference(ref).eval()
    assert len(ours.encoder.layers) == 2 and len(ours.decoder.layers) == 3 and ours.encoder.norm is not None
    src, tgt = torch.randn(3, 7, D), torch.randn(3, 5, D)
    src_valid, tgt_valid = padding_mask(LENGTHS, 7), padding_mask(torch.tensor([5, 5, 2]), 5)
    expected = ref(src, tgt, tgt_mask=torch_causal(5), src_key_padding_mask=~src_valid,
                   tgt_key_padding_mask=~tgt_valid, memory_key_padding_mask=~src_valid)
    actual = ours(src, tgt, src_mask=key_mask(src_valid), tgt_mask=target_mask(tgt_valid),
                  memory_mask=key_mask(src_valid))
    assert_close(actual, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
def test_transformer_from_reference_float64():
    ref = nn.Transformer(D, H, 1, 1, FF, dropout=0.0, batch_first=True).double().eval()
    ours = Transformer.from_reference(ref).eval()
    src, tgt = torch.randn(2, 4, D, dtype=torch.float64), torch.randn(2, 3, D, dtype=torch.float64)
    assert_close(ours(src, tgt, tgt_mask=causal_mask(3)), ref(src, tgt, tgt_mask=torch_causal(3)))


def test_stacks_return_weights_per_layer():
    enc = Encoder(EncoderLayer(D, H, FF, dropout=0.0), 2)
    dec = Decoder(DecoderLayer(D, H, FF, dropout=0.0), 3)
    x, memory = torch.randn(2, 4, D), torch.randn(2, 5, D)
    _, weights = enc(x, need_weights=True)
    _, self_w, cross_w = dec(x, memory, need_weights=True)
    assert [w.shape for w in weights] == [(2, H, 4, 4)] * 2
    assert len(self_w) == len(cross_w) == 3 and cross_w[0].shape == (2, H, 4, 5)
    assert enc.layers[0].linear1.weight.data_ptr() != enc.layers[1].linear1.weight.data_ptr()  # copies


def test_dropout_only_in_training():
    layer = EncoderLayer(D, H, FF, dropout=0.5)
    x = torch.randn(2, 4, D)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    assert_close(layer(x), layer(x))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer(D, H, activation="tanh")
    layer = EncoderLayer(D, H, FF)
    with pytest.raises(ShapeError, match=r"x: expected feature size d_model=12"):
        layer(torch.randn(2, 4, D + 1))
    with pytest.raises(ShapeError, match="x: expected 3 dimensions"):
        layer(torch.randn(4, D))
    with pytest.raises(DTypeError, match="mask"):
        layer(torch.randn(2, 4, D), mask=torch.ones(4, 4))
    with pytest.raises(ShapeError, match="mask"):
        layer(torch.randn(2, 4, D), mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ShapeError, match="memory: expected batch size 2"):
        DecoderLayer(D, H, FF)(torch.randn(2, 4, D), torch.randn(3, 4, D))
    with pytest.raises(TypeError, match="TransformerEncoderLayer"):
        EncoderLayer.from_reference(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="TransformerDecoderLayer"):
        DecoderLayer.from_reference(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="nn.Transformer"):
        Transformer.from_reference(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="num_layers"):
        Encoder(layer, 0)


# --- masks and the sequence-to-sequence model ---------------------------------------------------------------


def test_target_mask_is_causal_and_hides_padding():
    mask = target_mask(padding_mask(torch.tensor([3, 2]), 3))
    assert mask.shape == (2, 1, 3, 3)
    assert_close(mask[0, 0], causal_mask(3))
    assert not mask[1, 0, :, 2].any() and mask[1, 0, 1, :2].all()


def small_model(**kwargs):
    torch.manual_seed(4)
    return Seq2SeqTransformer(9, 11, d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
                              dim_feedforward=24, dropout=0.0, **kwargs).eval()


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_seq2seq_is_causal_and_ignores_padding(positional):
    model = small_model(positional=positional)
    src = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 3, 4]])
    tgt = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
    logits = model(src, tgt)
    assert logits.shape == (2, 4, 11)
    changed_future = tgt.clone()
    changed_future[:, 3] = 4
    assert_close(model(src, changed_future)[:, :3], logits[:, :3])  # the causal mask: no peeking ahead
    assert not torch.allclose(model(src, changed_future)[:, 3], logits[:, 3])
    assert_close(model(src[:1, :3], tgt[:1]), logits[:1], atol=1e-5, rtol=1e-5)  # padding changes nothing


def test_label_smoothing_matches_torch():
    logits, target = torch.randn(10, 7), torch.randint(0, 7, (10,))
    target[3] = -100
    for eps in (0.0, 0.1, 0.3):
        assert_close(label_smoothing_loss(logits, target, eps),
                     F.cross_entropy(logits, target, label_smoothing=eps, ignore_index=-100))
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothing_loss(logits, target, 1.0)
    with pytest.raises(ShapeError, match="target"):
        label_smoothing_loss(logits, target[:5])


def test_greedy_decode_equals_stepwise_argmax():
    model = small_model()
    src = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 3]])
    out = greedy_decode(model, src, bos_id=1, eos_id=2, max_len=5)
    for b in range(2):
        prefix = torch.tensor([[1]])
        for _ in range(out.shape[1] - 1):
            nxt = model(src[b : b + 1], prefix)[0, -1].argmax()
            prefix = torch.cat([prefix, nxt.view(1, 1)], dim=1)
            if nxt == 2:
                break
        assert prefix[0].tolist() == out[b, : prefix.shape[1]].tolist()
    assert beam_search(model, src, 1, 2, 5, beam_size=1) == [_strip(row.tolist()) for row in out]


def _strip(ids, eos=2):
    """Greedy output row → beam-search format: drop BOS, cut after the first EOS."""
    ids = ids[1:]
    return ids[: ids.index(eos) + 1] if eos in ids else ids


class MarkovToy(nn.Module):
    """A decoder whose next-token distribution depends on the last token only: greedy is short-sighted here."""

    def __init__(self, table):
        super().__init__()
        self.table = table.log()

    def encode(self, src):
        return (src,)

    def next_log_probs(self, context, prefix):
        return self.table[prefix[:, -1]]


def test_beam_search_finds_the_optimum_that_greedy_misses():
    # tokens: 0 BOS, 1 "a", 2 "b", 3 EOS. Greedy takes "a" (0.6) then is stuck with 0.5; "b" (0.4) then EOS (1.0).
    table = torch.tensor([[1e-9, 0.6, 0.4, 1e-9], [1e-9, 1e-9, 0.5, 0.5], [1e-9, 1e-9, 1e-9, 1.0],
                          [1e-9, 1e-9, 1e-9, 1.0]])
    table = table / table.sum(-1, keepdim=True)
    model, src = MarkovToy(table), torch.zeros(1, 1, dtype=torch.long)
    greedy = _strip(greedy_decode(model, src, 0, 3, 4)[0].tolist(), eos=3)
    beam = beam_search(model, src, 0, 3, 4, beam_size=2)[0]
    assert greedy == [1, 2, 3] or greedy == [1, 3]
    assert beam == [2, 3]

    def log_prob(seq):
        return sum(float(table[a, b].log()) for a, b in zip([0, *seq], seq))

    best = max((list(s) + [3] for n in range(0, 3) for s in itertools.product([1, 2], repeat=n)), key=log_prob)
    assert beam == best
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, 0, 3, 4, beam_size=0)


def _sequence_score(model, src, seq, bos_id, length_penalty):
    """Total log-probability of ``seq`` (ids after BOS) given ``src`` (1, n_s), divided by len^length_penalty."""
    prefix = torch.tensor([[bos_id, *seq]])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(src, prefix[:, :-1]), dim=-1)[0]
    return float(log_probs.gather(1, prefix[0, 1:, None]).sum()) / len(seq) ** length_penalty


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_search_with_a_wide_beam_is_exhaustive_search(length_penalty):
    # vocabulary 0 pad, 1 BOS, 2 EOS, 3, 4 (and 5 for the source): with a beam wider than the number of
    # prefixes nothing is pruned, so the answer must be the best of all sequences, found by enumeration.
    torch.manual_seed(7)
    model = Seq2SeqTransformer(6, 5, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                               dim_feedforward=16, dropout=0.0).eval()
    with torch.no_grad():
        model.generator.bias.copy_(torch.tensor([-20.0, -20.0, 0.0, 0.0, 0.0]))  # pad/BOS are never best
    src = torch.tensor([[3, 4, 5, 0], [5, 5, 3, 4], [4, 0, 0, 0]])
    max_len = 4
    found = beam_search(model, src, 1, 2, max_len, beam_size=5**max_len, length_penalty=length_penalty)
    for b in range(src.shape[0]):
        row = src[b : b + 1, : int((src[b] != 0).sum())]
        finished = [[*s, 2] for n in range(max_len) for s in itertools.product(range(5), repeat=n) if 2 not in s]
        unfinished = [list(s) for s in itertools.product(range(5), repeat=max_len) if 2 not in s]
        scores = {tuple(s): _sequence_score(model, row, s, 1, length_penalty) for s in finished + unfinished}
        best = max(scores.values())
        assert scores[tuple(found[b])] == pytest.approx(best, abs=1e-5)


def test_beam_search_over_a_batch_equals_one_source_at_a_time():
    model = small_model()
    torch.manual_seed(0)
    src = torch.randint(3, 9, (12, 6))
    src[::3, 4:] = 0  # padded sources in the same batch
    for length_penalty in (0.0, 1.0):
        together = beam_search(model, src, 1, 2, 8, beam_size=3, length_penalty=length_penalty)
        alone = [beam_search(model, src[b : b + 1, : int((src[b] != 0).sum())], 1, 2, 8, beam_size=3,
                             length_penalty=length_penalty)[0] for b in range(src.shape[0])]
        assert together == alone



class _Recomputing(nn.Module):
    """The same model seen through ``encode`` and ``next_log_probs`` only: decoding recomputes every prefix."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def encode(self, src):
        return self.model.encode(src)

    def next_log_probs(self, context, prefix):
        return self.model.next_log_probs(context, prefix)


@pytest.mark.parametrize("positional,norm_first", [("sinusoidal", False), ("learned", True)])
def test_decode_step_with_its_cache_equals_recomputing_the_prefix(positional, norm_first):
    model = small_model(positional=positional, norm_first=norm_first)
    src = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 3]])
    prefix = torch.tensor([[1, 5, 0, 7, 4, 9], [1, 3, 3, 10, 2, 6]])  # a pad (0) inside the first prefix
    context = model.encode(src)
    with torch.no_grad():
        log_probs, cache = model.decode_step(context, prefix[:, :2])  # no cache: both positions at once
        assert_close(log_probs, model.next_log_probs(context, prefix[:, :2]))
        for t in range(3, prefix.shape[1] + 1):
            log_probs, cache = model.decode_step(context, prefix[:, :t], cache)
            assert_close(log_probs, model.next_log_probs(context, prefix[:, :t]), atol=1e-5, rtol=1e-5)
        assert cache[0].tolist() == (prefix != 0).tolist()
        with pytest.raises(ShapeError, match="prefix"):
            model.decode_step(context, prefix, cache)  # nothing new after the cached positions


def test_decoding_with_the_cache_gives_what_recomputing_gives():
    model, src = small_model(), torch.randint(3, 9, (6, 5), generator=torch.Generator().manual_seed(1))
    recomputing = _Recomputing(model)
    assert torch.equal(greedy_decode(model, src, 1, 2, 7), greedy_decode(recomputing, src, 1, 2, 7))
    for length_penalty in (0.0, 1.0):
        assert beam_search(model, src, 1, 2, 7, 3, length_penalty) == beam_search(recomputing, src, 1, 2, 7, 3,
                                                                                   length_penalty)

# --- positional encodings -----------------------------------------------------------------------------------


def test_sinusoidal_table_formula():
    pe = sinusoidal_table(50, 8)
    pos, i = 17, 3
    assert_close(pe[pos, 2 * i], torch.tensor(torch.sin(torch.tensor(pos / 10000 ** (2 * i / 8))).item()))
    assert_close(pe[pos, 2 * i + 1], torch.tensor(torch.cos(torch.tensor(pos / 10000 ** (2 * i / 8))).item()))


@pytest.mark.parametrize("k", [1, 5, 23])
def test_shift_is_linear_in_position(k):
    pe = sinusoidal_table(100, 16).double()
    shifted = pe[:-k] @ shift_matrix(k, 16).T  # PE(pos + k) = M_k PE(pos), for all pos at once
    assert_close(shifted, pe[k:], atol=1e-6, rtol=0)
    assert_close(shift_matrix(k, 16) @ shift_matrix(k, 16).T, torch.eye(16, dtype=torch.float64))  # a rotation


def test_positional_modules():
    x = torch.zeros(2, 5, 8)
    assert_close(SinusoidalPositionalEncoding(8, 10)(x)[0], sinusoidal_table(5, 8))
    learned = LearnedPositionalEncoding(8, 10)
    assert sum(p.numel() for p in learned.parameters()) == 80
    assert isinstance(positional_encoding("learned", 8), LearnedPositionalEncoding)
    with pytest.raises(ValueError, match="kind"):
        positional_encoding("rotary", 8)
    with pytest.raises(ValueError, match="d_model"):
        sinusoidal_table(5, 7)
    with pytest.raises(ShapeError, match=r"x: expected shape \(batch, n <= 4, 8\)"):
        SinusoidalPositionalEncoding(8, 4)(x)


# --- training and evaluation helpers ------------------------------------------------------------------------


def test_exact_match_compares_up_to_eos():
    table = torch.full((4, 4), 1e-6)
    table[0, 1] = table[1, 2] = table[2, 3] = table[3, 3] = 1.0  # BOS → 1 → 2 → EOS
    model, src = MarkovToy(table / table.sum(-1, keepdim=True)), torch.zeros(3, 1, dtype=torch.long)
    tgt = torch.tensor([[0, 1, 2, 3, 9, 9], [0, 1, 3, 9, 9, 9], [0, 1, 2, 2, 3, 9]])
    assert exact_match(model, src, tgt, bos_id=0, eos_id=3, pad_id=9).tolist() == [True, False, False]


def test_train_seq2seq_learns_to_reverse():
    torch.manual_seed(5)
    src = torch.randint(3, 9, (96, 4))
    tgt = torch.cat([torch.ones(96, 1, dtype=torch.long), src.flip(1), torch.full((96, 1), 2)], dim=1)
    model = Seq2SeqTransformer(9, 9, d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                               dim_feedforward=32, dropout=0.0)
    batches = [(src[i : i + 32], tgt[i : i + 32]) for i in range(0, 96, 32)]
    losses = train_seq2seq(model, lambda: batches, epochs=25, lr=1e-2, warmup=10, smoothing=0.0)
    assert losses[-1] < 0.3 * losses[0]
    assert exact_match(model, src, tgt, 1, 2).float().mean() > 0.5
    with pytest.raises(ValueError, match="warmup"):
        warmup_then_decay(torch.optim.SGD(model.parameters(), lr=0.1), 10, 5)


# ------------------------------------------------------------------------------------- the layers' parts


def test_feed_forward_is_torchs_position_wise_network():
    torch.manual_seed(5)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu", batch_first=True).eval()
    ours = FeedForward(D, FF, activation="gelu")
    ours.load_state_dict({f"{name}.{p}": t for name in ("linear1", "linear2")
                          for p, t in getattr(ref, name).state_dict().items()})
    x = torch.randn(2, 5, D)
    assert_close(ours(x), ref.linear2(F.gelu(ref.linear1(x))))
    with pytest.raises(ValueError, match="activation"):
        FeedForward(D, FF, activation="tanh")


@pytest.mark.parametrize("norm_first", [False, True])
def test_residual_wires_a_sublayer_before_or_after_the_norm(norm_first):
    x = torch.randn(2, 3, D)
    norm = nn.LayerNorm(D)
    sublayer = lambda h: (2.0 * h + 1.0, "weights")  # noqa: E731
    out, extra = residual(x, norm, sublayer, norm_first)
    expected = x + 2.0 * norm(x) + 1.0 if norm_first else norm(x + 2.0 * x + 1.0)
    assert_close(out, expected)
    assert extra == "weights"


def test_layers_read_and_load_torchs_flat_parameter_names():
    """``layer.linear1`` is the feed-forward's, and a state dict with torch's flat names loads (ViT, DETR use them)."""
    torch.manual_seed(6)
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True).eval()
    ours = DecoderLayer(D, H, FF, dropout=0.0).eval()
    assert ours.linear1 is ours.feed_forward.linear1 and ours.dropout is ours.feed_forward.dropout
    assert "feed_forward.linear1.weight" in ours.state_dict() and "linear1.weight" not in ours.state_dict()
    flat = {k.replace("feed_forward.", ""): v for k, v in DecoderLayer.from_reference(ref).state_dict().items()}
    ours.load_state_dict(flat)
    x, memory = torch.randn(2, 4, D), torch.randn(2, 6, D)
    assert_close(ours(x, memory), ref(x, memory), atol=1e-5, rtol=1e-5)
