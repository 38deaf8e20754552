"""A small Sphinx extension with the site's fixes for offline widgets and math (loaded from _config.yml).

- Serves `static/mathjax2-bridge.js`, which lets ipywidgets 8 (written for MathJax 2) typeset its labels with
  the MathJax 3 the site uses, instead of throwing a page error on every widget.
- Drops repeated identical scripts from a page: sphinx-thebe 0.3.1 under Jupyter Book 1.0.4 adds its inline
  configuration twice, and the second copy is a "THEBE_JS_URL has already been declared" page error.
- Copies the widget manager's font files beside each page that holds widgets: the manager looks for them under
  `@jupyter-widgets/html-manager/dist/` relative to the page, not to its own script.
- Adds the vendored CJK web font (Noto Sans SC, split by unicode-range) at the end of the theme's font stacks,
  so the Chinese level names render on machines without a CJK font (`static/cjk-font.css`).
- Falls back to loading the pinned scripts from the CDN when the page is viewed if `site/vendor_js.py` could
  vendor nothing (no npm and no network at build time); the browser test then fails, as the site is not offline.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

import vendor_js

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
FONT_FILE = re.compile(r"^[0-9a-f]{20}\.(?:woff2|woff|ttf|eot|svg)$")
FONTS_BESIDE_PAGE = Path("@jupyter-widgets/html-manager/dist")


def _use_cdn_if_not_vendored(app: Sphinx, config: Config) -> None:
    if vendor_js.is_vendored():
        return
    urls = vendor_js.cdn_urls(vendor_js.locked_versions())
    config.mathjax_path = urls["mathjax"]
    config.nb_ipywidgets_js = {urls["require"]: {}, urls["embed"]: {"crossorigin": "anonymous"}}
    logger.info("attnbook_site: site/vendor is empty; pages will load MathJax and the widget manager from the CDN")


def _add_static(app: Sphinx) -> None:
    app.config.html_static_path.append(str(STATIC))
    # Priority 501: after Sphinx's inline MathJax configuration (500), whose object the bridge extends.
    app.add_js_file("mathjax2-bridge.js", priority=501)
    if vendor_js.is_vendored():
        app.add_css_file(vendor_js.CJK_CSS)
        app.add_css_file("cjk-font.css")


def _drop_repeated_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        # An inline script's filename is None or "" depending on who added it; compare what the page gets.
        key = (str(getattr(script, "filename", script) or ""), getattr(script, "priority", 500),
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def _copy_widget_fonts(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.builder.outdir)
    source = outdir / "_static" / "html-manager"
    fonts = [f for f in source.iterdir() if FONT_FILE.match(f.name)] if source.is_dir() else []
    folders = {page.parent for page in outdir.rglob("*.html") if WIDGET_STATE in page.read_text(encoding="utf-8")}
    for folder in folders:
        target = folder / FONTS_BESIDE_PAGE
        target.mkdir(parents=True, exist_ok=True)
        for font in fonts:
            shutil.copy2(font, target / font.name)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _use_cdn_if_not_vendored)
    app.connect("builder-inited", _add_static)
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)
    app.connect("build-finished", _copy_widget_fonts)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
