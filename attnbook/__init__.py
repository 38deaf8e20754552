"""attnbook: the helper package of *Attention in nine levels*.

One attention core (`attnbook.core`) and, for each level of the book, a small module built on it.
"""

from attnbook.core import MultiHeadAttention, attention, masked_softmax
from attnbook.repro import set_seed

__all__ = ["MultiHeadAttention", "attention", "masked_softmax", "set_seed"]
__version__ = "0.1.0"
