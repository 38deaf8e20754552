"""The GRU encoder-decoders: packing, Bahdanau's additive attention through the core, masks and errors."""

import pytest
import torch
from torch.testing import assert_close

from attnbook.rnn import GRUEncoder, GRUSeq2Seq

SRC = torch.tensor([[3, 4, 5, 6, 7], [8, 3, 4, 0, 0], [5, 0, 0, 0, 0]])
TGT = torch.tensor([[1, 4, 5, 6], [1, 7, 8, 0], [1, 3, 0, 0]])


def test_encoder_states_equal_one_sequence_at_a_time():
    torch.manual_seed(0)
    encoder = GRUEncoder(10, 6, 5)
    states, valid, initial = encoder(SRC)
    assert states.shape == (3, 5, 10) and initial.shape == (3, 5)
    for b in range(3):
        n = int(valid[b].sum())
        alone, last = encoder.rnn(encoder.embed(SRC[b : b + 1, :n]))
        assert_close(states[b, :n], alone[0])
        assert torch.all(states[b, n:] == 0)
        assert_close(initial[b], torch.tanh(encoder.bridge(torch.cat([last[0, 0], last[1, 0]]))))


def test_attention_is_bahdanau_additive_attention():
    torch.manual_seed(1)
    model = GRUSeq2Seq(10, 9, embed_dim=6, hidden_dim=5, attention=True).eval()
    context = model.encode(SRC)
    logits, alignment = model.decode(context, TGT, need_weights=True)
    assert logits.shape == (3, 4, 9) and alignment.shape == (3, 4, 5)
    assert_close(alignment.sum(-1), torch.ones(3, 4))
    assert torch.all(alignment[1, :, 3:] == 0) and torch.all(alignment[2, :, 1:] == 0)
    # first step by hand: alpha_j = softmax_j(v^T tanh(W s_0 + U h_j)) over the real tokens
    states, valid, s0 = context
    score = model.score
    e = score.v(torch.tanh(score.w_query(s0[0]) + score.w_key(states[0]))).squeeze(-1)
    assert_close(alignment[0, 0], torch.softmax(e, dim=-1))


@pytest.mark.parametrize("attention", [False, True])
def test_padding_changes_nothing_and_log_probs_normalise(attention):
    torch.manual_seed(2)
    model = GRUSeq2Seq(10, 9, embed_dim=6, hidden_dim=5, attention=attention).eval()
    logits = model(SRC, TGT)
    assert_close(model(SRC[1:2, :3], TGT[1:2]), logits[1:2], atol=1e-6, rtol=1e-5)
    log_probs = model.next_log_probs(model.encode(SRC), TGT[:, :2])
    assert_close(log_probs.exp().sum(-1), torch.ones(3))
    assert_close(log_probs, torch.log_softmax(logits[:, 1], -1))


def test_without_attention_the_context_is_fixed():
    torch.manual_seed(3)
    model = GRUSeq2Seq(10, 9, embed_dim=6, hidden_dim=5, attention=False).eval()
    assert model.score is None
    with pytest.raises(ValueError, match="need_weights"):
        model.decode(model.encode(SRC), TGT, need_weights=True)
    # changing an early source token still reaches the output, through the one context vector
    other = SRC.clone()
    other[0, 0] = 9
    assert not torch.allclose(model(other, TGT)[0], model(SRC, TGT)[0])


def test_learns_to_copy_reversed():
    torch.manual_seed(4)
    src = torch.randint(3, 8, (64, 4))
    tgt = torch.cat([torch.ones(64, 1, dtype=torch.long), src.flip(1), torch.full((64, 1), 2)], dim=1)
    model = GRUSeq2Seq(8, 8, embed_dim=16, hidden_dim=16, attention=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_errors():
    model = GRUSeq2Seq(10, 9, embed_dim=6, hidden_dim=5)
    with pytest.raises(ValueError, match="src: every sequence"):
        model.encode(torch.tensor([[3, 4], [0, 0]]))
    with pytest.raises(Exception, match="src: expected 2 dimensions"):
        model.encode(torch.tensor([3, 4]))
    with pytest.raises(Exception, match="tgt_in: expected 2 dimensions"):
        model.decode(model.encode(SRC), torch.tensor([1, 2]))
