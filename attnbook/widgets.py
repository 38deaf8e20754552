"""Explorers that work in a live kernel and on the static site alike.

Every frame is rendered in Python ahead of time; the control (a slider or a drop-down) is linked to a
`ipywidgets.Stack` of images with `ipywidgets.jslink`, which runs in the browser. Moving the control on the
built site therefore changes the figure with no kernel behind the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt

from attnbook.plot import to_png


def render_frames(render: Callable[[Any], plt.Figure], options: Sequence[Any]) -> list[bytes]:
    """Call ``render(option)`` for each option and return the figures as PNG bytes."""
    if len(options) == 0:
        raise ValueError("options: expected at least one option to render, got none")
    return [to_png(render(option)) for option in options]


def frame_explorer(
    frames: Sequence[bytes],
    labels: Sequence[str],
    description: str,
    control: str = "slider",
    index: int = 0,
) -> widgets.VBox:
    """A control (``"slider"`` or ``"dropdown"``) over ``labels`` that shows ``frames[i]`` for label i.

    The control's ``index`` is linked client-side to the stack's ``selected_index``: no kernel is needed.
    """
    if len(frames) != len(labels):
        raise ValueError(f"labels: expected {len(frames)} labels, one per frame, got {len(labels)}")
    if not 0 <= index < len(frames):
        raise ValueError(f"index: expected 0 <= index < {len(frames)}, got {index}")
    labels = [str(label) for label in labels]
    layout = widgets.Layout(width="auto")
    images = [widgets.Image(value=frame, format="png", layout=layout) for frame in frames]
    stack = widgets.Stack(images, selected_index=index)
    style = {"description_width": "initial"}
    if control == "slider":
        chooser = widgets.SelectionSlider(options=labels, index=index, description=description,
                                          continuous_update=True, style=style,
                                          layout=widgets.Layout(width="32em"))
    elif control == "dropdown":
        chooser = widgets.Dropdown(options=labels, index=index, description=description, style=style)
    else:
        raise ValueError(f"control: expected 'slider' or 'dropdown', got {control!r}")
    widgets.jslink((chooser, "index"), (stack, "selected_index"))
    box = widgets.VBox([chooser, stack])
    box.add_class("attnbook-explorer")
    return box


def explorer(
    render: Callable[[Any], plt.Figure],
    options: Sequence[Any],
    description: str,
    labels: Sequence[str] | None = None,
    control: str = "slider",
    index: int = 0,
) -> widgets.VBox:
    """Precompute ``render(option)`` for every option and return a `frame_explorer` over them."""
    labels = [str(o) for o in options] if labels is None else labels
    return frame_explorer(render_frames(render, options), labels, description, control, index)
