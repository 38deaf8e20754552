"""Showing the package's own code in a chapter: the reader sees the code that runs, never a copy that can drift."""

from __future__ import annotations

import inspect
import textwrap

from IPython.display import Markdown


def show_source(obj: object) -> Markdown:
    """The source of a package function, class or method, rendered as a highlighted block with its full name.

    A chapter derives an idea, then calls ``show_source(attnbook.core.attention)`` and asserts its derivation
    equal to that function: the page shows exactly the code its assertion checked.
    """
    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as error:
        raise TypeError(f"obj: expected a function, class or method with source code, got {obj!r}") from error
    module = inspect.getmodule(obj)
    name = f"{module.__name__}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}" if module else ""
    return Markdown(f"`{name}`\n\n```python\n{textwrap.dedent(source).rstrip()}\n```")
