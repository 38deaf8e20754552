"""Chapter 1's end-to-end memory network (Sukhbaatar et al. 2015), in three small modules.

`encoding` turns sentences into vectors (the position-weighted bag of words), `model` reads the memory hop
after hop (`MemN2N`, each hop one call of `attnbook.core.attention`), and `training` is the paper's recipe
(random empty memories, linear start, restarts trained side by side through `attnbook.train.fit`). Every
public name is importable from ``attnbook.memory``.
"""

from attnbook.memory.encoding import (POSITION_SCALE, bag_of_words, embed_sentences, position_encoding,
                                      word_weights)
from attnbook.memory.model import (MemN2N, attention_on_facts, fill_memory, hop, memory_vectors,
                                   read_memory)
from attnbook.memory.training import (PAPER_HOPS_JOINT, PAPER_PE_LS_RN, PAPER_PE_LS_RN_JOINT, MemN2NRecipe,
                                      MemN2NResult, Recipe, StackedMemN2N, TrainResult, add_empty_memories,
                                      clip_per_restart, train_memn2n)

__all__ = [
    "PAPER_HOPS_JOINT", "PAPER_PE_LS_RN", "PAPER_PE_LS_RN_JOINT", "POSITION_SCALE", "MemN2N", "MemN2NRecipe",
    "MemN2NResult", "Recipe", "StackedMemN2N", "TrainResult", "add_empty_memories", "attention_on_facts",
    "bag_of_words", "clip_per_restart", "embed_sentences", "fill_memory", "hop", "memory_vectors",
    "position_encoding", "read_memory", "train_memn2n", "word_weights",
]
