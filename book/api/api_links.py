"""A small Sphinx extension: inline code that names a package object links to its entry in the API reference.

A chapter that writes `attnbook.core.attention` (or `attnbook.transformer.EncoderLayer`, a name the package
re-exports from the module that defines it) gets a link to that object's page in ``book/api/``, so a reader can
click through from the prose to the documented function. Only literals that import as an ``attnbook`` object
and are documented by autodoc become links; everything else is left as it is.
"""

from __future__ import annotations

import importlib
import re

from docutils import nodes

NAME = re.compile(r"^attnbook(\.\w+)+$")


def _defining_name(dotted: str) -> str | None:
    """``attnbook.core.attention`` → ``attnbook.core.attend.attention`` (where autodoc documents it), or None."""
    module, _, attribute = dotted.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        try:
            importlib.import_module(dotted)  # a module: documented under its own name
        except ImportError:
            return None
        return dotted
    owner = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    return f"{owner}.{qualname}" if owner and qualname else dotted


def link_literals(app, doctree: nodes.document, docname: str) -> None:
    objects = app.env.get_domain("py").objects  # full name -> (docname, node_id, objtype, ...)
    for literal in list(doctree.findall(nodes.literal)):
        text = literal.astext()
        if not NAME.match(text) or isinstance(literal.parent, nodes.reference):
            continue
        target = objects.get(text) or objects.get(_defining_name(text) or "")
        if target is None:
            continue
        uri = app.builder.get_relative_uri(docname, target.docname) + "#" + target.node_id
        literal.replace_self(nodes.reference("", "", literal.deepcopy(), internal=True, refuri=uri))


def setup(app):
    app.connect("doctree-resolved", link_literals)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
