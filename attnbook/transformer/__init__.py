"""The Transformer of Vaswani et al. (2017), chapter 3, in small modules built on `attnbook.core`.

`layers` (the `FeedForward` network, the `residual` wiring, `EncoderLayer`, `DecoderLayer`), `model` (the
stacks and the encoder-decoder `Transformer`), `seq2seq` (token embeddings, positions and masks:
`Seq2SeqTransformer`), `decoding` (greedy, beam search) and `training` (label smoothing, warm-up,
`train_seq2seq`). Every public name is importable from ``attnbook.transformer``.
"""

from attnbook.transformer.decoding import beam_search, exact_match, greedy_decode
from attnbook.transformer.layers import ACTIVATIONS, DecoderLayer, EncoderLayer, FeedForward, residual
from attnbook.transformer.model import Decoder, Encoder, Transformer
from attnbook.transformer.seq2seq import Seq2SeqTransformer, source_masks, target_mask
from attnbook.transformer.training import label_smoothing_loss, train_seq2seq, warmup_then_decay

__all__ = [
    "ACTIVATIONS", "Decoder", "DecoderLayer", "Encoder", "EncoderLayer", "FeedForward", "Seq2SeqTransformer",
    "Transformer", "beam_search", "exact_match", "greedy_decode", "label_smoothing_loss", "residual",
    "source_masks", "target_mask", "train_seq2seq", "warmup_then_decay",
]
