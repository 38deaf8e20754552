"""attnbook.widgets: one precomputed frame per option, a control linked to the frames client-side, clear errors."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from attnbook.widgets import explorer, frame_explorer, render_frames  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def line(slope: float) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, slope])
    ax.set_ylim(-2, 2)
    return fig


def parts(box: widgets.VBox) -> tuple[widgets.Widget, widgets.Stack]:
    chooser, stack = box.children
    return chooser, stack


def test_render_frames_gives_one_distinct_png_per_option() -> None:
    open_before = plt.get_fignums()  # figures another test in this worker left open are not ours
    frames = render_frames(line, [-1.0, 0.0, 1.0])
    assert len(frames) == 3
    assert all(frame.startswith(PNG_SIGNATURE) for frame in frames)
    assert len(set(frames)) == 3, "different options rendered identical frames"
    assert plt.get_fignums() == open_before, "render_frames left figures open (they would also show inline)"


def test_explorer_links_the_slider_to_the_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    links = []

    def recording_jslink(source, target):
        links.append((source, target))
        return jslink(source, target)

    jslink = widgets.jslink
    monkeypatch.setattr(widgets, "jslink", recording_jslink)
    box = explorer(line, [-1.0, 0.5, 1.5], "slope", index=1)
    chooser, stack = parts(box)
    assert isinstance(chooser, widgets.SelectionSlider)
    assert chooser.options == ("-1.0", "0.5", "1.5") and chooser.index == 1
    assert [image.value for image in stack.children] == render_frames(line, [-1.0, 0.5, 1.5])
    assert stack.selected_index == 1
    assert "attnbook-explorer" in box._dom_classes
    # The link runs in the browser (jslink), so the static site needs no kernel to switch frames.
    assert links == [((chooser, "index"), (stack, "selected_index"))]


def test_dropdown_control_and_labels() -> None:
    box = frame_explorer(render_frames(line, [1.0, 2.0]), ["gentle", "steep"], "slope", control="dropdown")
    chooser, stack = parts(box)
    assert isinstance(chooser, widgets.Dropdown)
    assert chooser.options == ("gentle", "steep") and stack.selected_index == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: render_frames(line, []), "options: expected at least one option"),
        (lambda: frame_explorer([b"a", b"b"], ["one"], "x"), "labels: expected 2 labels"),
        (lambda: frame_explorer([b"a"], ["one"], "x", index=1), "index: expected 0 <= index < 1, got 1"),
        (lambda: frame_explorer([b"a"], ["one"], "x", control="knob"), "control: expected 'slider' or 'dropdown'"),
        (lambda: explorer(line, [1.0, 2.0], "x", labels=["a"]), "labels: expected 2 labels, one per frame, got 1"),
    ],
)
def test_bad_input_raises_a_clear_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()
