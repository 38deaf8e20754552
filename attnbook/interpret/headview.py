"""A head view that works on the static site: pick a layer and a head, see its attention over the sentence.

bertviz draws its views with d3 loaded from a CDN, so they go blank offline. Here every (layer, head) map is
drawn ahead of time as a PNG — the sentence's tokens along both axes of a heatmap — and
`attnbook.widgets.frame_explorer` links a slider to the frames in the browser. The frames are drawn with
Pillow rather than matplotlib because a model has many heads (MiniLM: 72) and Pillow draws one in a few
milliseconds. Chapter 8 uses it on MiniLM.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import ipywidgets as widgets
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from attnbook.interpret.rollout import check_attentions
from attnbook.plot import ATTENTION_CMAP
from attnbook.widgets import frame_explorer

CELL = 20  # pixels per heatmap cell


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=12)


def _text_width(font: ImageFont.FreeTypeFont, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return right - left


@lru_cache(maxsize=4)
def _canvas(tokens: tuple[str, ...]) -> tuple[Image.Image, int, int]:
    """The parts every frame of a sentence shares: token labels on both axes and the caption."""
    font, n = _font(), len(tokens)
    caption = "rows: queries, columns: keys; darker = more weight"
    label = max(_text_width(font, t) for t in tokens) + 8
    top = label + 24
    width = max(label + n * CELL, _text_width(font, caption)) + 10
    image = Image.new("RGB", (width, top + n * CELL + 22), "white")
    draw = ImageDraw.Draw(image)
    for i, token in enumerate(tokens):
        draw.text((label - 4 - _text_width(font, token), top + i * CELL + 3), token, fill="black", font=font)
        stamp = Image.new("RGB", (_text_width(font, token) + 4, CELL - 4), "white")
        ImageDraw.Draw(stamp).text((2, 0), token, fill="black", font=font)
        stamp = stamp.rotate(90, expand=True)  # key labels, written vertically above the columns
        image.paste(stamp, (label + i * CELL + 2, top - 4 - stamp.height))
    draw.text((4, top + n * CELL + 4), caption, fill="dimgray", font=font)
    return image, label, top


def head_frame(weights: Tensor, tokens: Sequence[str], title: str) -> bytes:
    """One head's ``(n, n)`` weights as a PNG heatmap: rows are queries, columns keys, tokens on both axes."""
    n = len(tokens)
    if tuple(weights.shape) != (n, n):
        raise ValueError(f"weights: expected ({n}, {n}) for {n} tokens, got {tuple(weights.shape)}")
    canvas, label, top = _canvas(tuple(tokens))
    image = canvas.copy()
    ImageDraw.Draw(image).text((4, 4), title, fill="black", font=_font())
    colours = matplotlib.colormaps[ATTENTION_CMAP](weights.detach().clamp(0, 1).cpu().numpy())[..., :3]
    cells = np.kron((255 * colours).astype(np.uint8), np.ones((CELL, CELL, 1), dtype=np.uint8))
    image.paste(Image.fromarray(cells), (label, top))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def head_view(attentions: Sequence[Tensor], tokens: Sequence[str], index: int = 0) -> widgets.VBox:
    """A slider over every (layer, head) of one sentence's attention; ``attentions`` per layer
    ``(1, heads, n, n)`` (HuggingFace's layout, batch of one) or ``(heads, n, n)``."""
    layers = [a if a.dim() == 4 else a[None] for a in attentions]
    layers = check_attentions(layers)
    if layers[0].shape[0] != 1:
        raise ValueError(f"attentions: expected one sentence (batch 1), got batch {layers[0].shape[0]}")
    frames, labels = [], []
    for layer, weights in enumerate(layers):
        for head in range(weights.shape[1]):
            labels.append(f"layer {layer + 1}, head {head + 1}")
            frames.append(head_frame(weights[0, head], tokens, labels[-1]))
    return frame_explorer(frames, labels, "layer, head", control="slider", index=index)
