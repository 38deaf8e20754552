"""Train the package's Transformer on Multi30k German → English and report BLEU on the 2016 Flickr test set.

The data is task 1 of Multi30k (29,000 training pairs) read from ``$ATTNBOOK_DATA/multi30k/`` with its SHA-256
checked (`attnbook.data.multi30k`); a byte-pair-encoding tokenizer with a joint German–English vocabulary is
learned from the training split. The model is `attnbook.transformer.Seq2SeqTransformer` (pre-norm, sinusoidal
positions), trained with Adam, the paper's warm-up then inverse-square-root learning rate, label smoothing 0.1
and batches of about ``--max-tokens`` target tokens, for as many whole epochs as fit in ``--train-seconds``
(each epoch's time is measured, and no epoch is started that would overrun). The test set is then translated
with greedy decoding and with beam search, and scored with sacreBLEU (cased, its default 13a tokenization,
against the single reference) on the detokenized output.

    python benchmarks/multi30k.py [--train-seconds 960] [--threads 2] [--epochs N]

The last line is one JSON object: {"bleu_greedy": ..., "bleu_beam": ..., "seconds": ..., ...}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from attnbook.data.multi30k import BOS_ID, EOS_ID, PAD_ID, encode_pairs, load_multi30k, train_subword_tokenizer
from attnbook.repro import set_seed, threads
from attnbook.train import fit
from attnbook.transformer import Seq2SeqTransformer, beam_search, greedy_decode, label_smoothing_loss


def inverse_sqrt(optimizer: torch.optim.Optimizer, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """lr ∝ min(step / warmup, √(warmup / step)): Vaswani et al.'s schedule, scaled to peak at the base lr."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))
    )


def translate(model, tokenizer, src: torch.Tensor, beam: int, batch_size: int = 100) -> list[str]:
    """Detokenized translations of source ids ``(N, n_s)``: greedy when ``beam`` is 1, else beam search.

    Sources are decoded in batches of similar length (less padding, fewer steps per batch), in the given order.
    """
    model.eval()
    lengths = (src != PAD_ID).sum(1)
    order = lengths.argsort(stable=True).tolist()
    out: list[str] = [""] * src.shape[0]
    for start in range(0, src.shape[0], batch_size):
        rows = order[start : start + batch_size]
        longest = int(lengths[rows].max())
        chunk, max_len = src[rows, :longest], longest + 10
        if beam == 1:
            ids = [row[1:].tolist() for row in greedy_decode(model, chunk, BOS_ID, EOS_ID, max_len)]
        else:
            ids = beam_search(model, chunk, BOS_ID, EOS_ID, max_len, beam_size=beam, length_penalty=1.0)
        for row, seq in zip(rows, ids):
            out[row] = tokenizer.decode(seq[: seq.index(EOS_ID)] if EOS_ID in seq else seq)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seconds", type=float, default=960.0, help="wall-clock budget for training")
    parser.add_argument("--epochs", type=int, default=40, help="at most this many epochs")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads (the machine has 2 cores)")
    parser.add_argument("--vocab", type=int, default=8000, help="joint BPE vocabulary size")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ff", type=int, default=1024, help="feed-forward width")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=400, help="warm-up steps")
    parser.add_argument("--max-tokens", type=int, default=4000, help="target tokens per batch")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N pairs only (tests)")
    parser.add_argument("--test-limit", type=int, default=None, help="translate only the first N test pairs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    from sacrebleu import corpus_bleu  # a benchmark dependency, pinned in requirements.txt

    with threads(args.threads):
        generator = set_seed(args.seed)
        train, test = load_multi30k("train"), load_multi30k("test")
        train, test = train[: args.train_limit], test[: args.test_limit]
        tokenizer = train_subword_tokenizer([s for pair in train for s in pair], args.vocab)
        train_ids, test_ids = encode_pairs(tokenizer, train), encode_pairs(tokenizer, test)
        vocab = tokenizer.get_vocab_size()
        model = Seq2SeqTransformer(vocab, vocab, d_model=args.d_model, nhead=args.heads,
                                   num_encoder_layers=args.layers, num_decoder_layers=args.layers,
                                   dim_feedforward=args.ff, dropout=args.dropout, max_len=256, norm_first=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9)
        scheduler = inverse_sqrt(optimizer, args.warmup)

        def loss_fn(batch):
            src, tgt = batch
            logits = model(src, tgt[:, :-1])
            return label_smoothing_loss(logits.flatten(0, 1), tgt[:, 1:].flatten(), 0.1, ignore_index=PAD_ID)

        train_start, losses, epoch_seconds = time.perf_counter(), [], []
        for epoch in range(args.epochs):
            elapsed = time.perf_counter() - train_start
            if epoch_seconds and elapsed + max(epoch_seconds) > args.train_seconds:
                break
            tick = time.perf_counter()
            losses += fit(model, optimizer, lambda: train_ids.batches(args.max_tokens, generator), loss_fn, 1,
                          clip_norm=1.0, scheduler=scheduler, desc=f"epoch {epoch + 1}")
            epoch_seconds.append(time.perf_counter() - tick)
            print(f"epoch {epoch + 1}: loss {losses[-1]:.3f} ({epoch_seconds[-1]:.0f} s)", flush=True)
        train_seconds = time.perf_counter() - train_start

        references = [en for _, en in test]
        greedy = translate(model, tokenizer, test_ids.src, beam=1)
        bleu_greedy = corpus_bleu(greedy, [references]).score
        print(f"greedy BLEU {bleu_greedy:.1f}", flush=True)
        beamed = translate(model, tokenizer, test_ids.src, beam=args.beam)
        bleu_beam = corpus_bleu(beamed, [references]).score
    seconds = time.perf_counter() - start
    for (de, en), hyp in list(zip(test, beamed))[:3]:
        print(f"  de: {de}\n  en: {en}\n  mt: {hyp}")
    print(f"{len(epoch_seconds)} epochs in {train_seconds:.0f} s; BLEU greedy {bleu_greedy:.1f}, "
          f"beam {args.beam} {bleu_beam:.1f}; total {seconds:.0f} s")
    print(json.dumps({"bleu_greedy": round(bleu_greedy, 2), "bleu_beam": round(bleu_beam, 2),
                      "seconds": round(seconds, 1), "epochs": len(epoch_seconds),
                      "train_seconds": round(train_seconds, 1), "test_sentences": len(test)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
