"""HuggingFace's BERT parameter names → this package's (chapter 4), and loading a `transformers` state dict.

The layers of `attnbook.bert` are the Transformer chapter's, so a HuggingFace name such as
``encoder.layer.0.intermediate.dense.weight`` becomes ``encoder.layers.0.feed_forward.linear1.weight``.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor, nn

_RENAMES = [
    (r"\.attention\.self\.query\.", ".self_attn.q_proj."),
    (r"\.attention\.self\.key\.", ".self_attn.k_proj."),
    (r"\.attention\.self\.value\.", ".self_attn.v_proj."),
    (r"\.attention\.output\.dense\.", ".self_attn.out_proj."),
    (r"\.attention\.output\.LayerNorm\.", ".norm1."),
    (r"\.intermediate\.dense\.", ".feed_forward.linear1."),
    (r"\.output\.dense\.", ".feed_forward.linear2."),
    (r"\.output\.LayerNorm\.", ".norm2."),
    (r"encoder\.layer\.", "encoder.layers."),
    (r"embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"^cls\.predictions\.transform\.dense\.", "mlm.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm.norm."),
    (r"^cls\.predictions\.decoder\.bias$", "mlm.decoder.bias"),
    (r"^cls\.seq_relationship\.", "nsp."),
]
# Entries with no parameter of their own here: a buffer of 0..n-1, the decoder weight (tied to the token
# embeddings) and a second name of the decoder bias.
_SKIP = re.compile(r"(embeddings\.position_ids|cls\.predictions\.decoder\.weight|cls\.predictions\.bias)$")


def hf_to_attnbook(name: str) -> str | None:
    """Our parameter name for a HuggingFace BERT parameter name, or None for entries we do not store."""
    if _SKIP.search(name):
        return None
    for pattern, replacement in _RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def load_reference_state(model: nn.Module, state: dict[str, Tensor]) -> Any:
    """Load a HuggingFace state dict into ``model`` after renaming; every parameter must be matched."""
    renamed = {new: value for key, value in state.items() if (new := hf_to_attnbook(key)) is not None}
    if "mlm.decoder.bias" in model.state_dict() and "mlm.decoder.weight" not in renamed:
        renamed["mlm.decoder.weight"] = renamed["bert.embeddings.word_embeddings.weight"]
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def check_reference_class(module: Any, name: str) -> None:
    """Raise a TypeError unless ``module`` is an instance of ``transformers.<name>`` (imported only here)."""
    import transformers

    if not isinstance(module, getattr(transformers, name)):
        raise TypeError(f"module: expected transformers.{name}, got {type(module).__name__}")
