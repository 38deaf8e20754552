"""The built site, as a reader's browser sees it: headless Chromium on the chapter-2 page, served from localhost.

The test fails on any console error, page error, failed request or request to a host other than localhost (the
site must work offline), and checks that figures loaded, math rendered, every widget drew, and that moving a
widget's slider changes the figure with no kernel behind the page. It also checks that Sphinx search finds pages
and that the Chinese level names are drawn with the vendored CJK web font (machines without a CJK font of their
own, like the headless test machine, would otherwise show empty boxes).

It needs the built site (`make book`, or ATTNBOOK_SITE=path/to/html) and Chromium (`/usr/bin/chromium`, or
CHROMIUM=path). Without them it skips, unless ATTNBOOK_REQUIRE_BROWSER=1 (as `make test` sets), when it fails.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("ATTNBOOK_SITE", ROOT / "_build" / "html"))
CHAPTER = "chapters/02_weighted_average.html"
SCREENSHOTS = ROOT / "_build" / "browser"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
BIB_KEYS = re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), flags=re.M)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _unavailable(reason: str) -> None:
    if os.environ.get("ATTNBOOK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (ATTNBOOK_REQUIRE_BROWSER=1, so this is an error, not a skip)")
    pytest.skip(reason)


def _chromium() -> str | None:
    candidates = [os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                  "/usr/bin/chromium"]
    return next((c for c in candidates if c and Path(c).is_file()), None)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Keep the test output clean; failed requests are caught in the browser instead."""


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    """Serve the built site on an ephemeral port of 127.0.0.1 for the duration of the module."""
    if not (SITE / CHAPTER).is_file():
        _unavailable(f"the site is not built: {CHAPTER} is missing under _build/html (run `make book`)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        _unavailable("Chromium is not installed (apt-get install chromium, or set CHROMIUM=path)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class PageProblems:
    """Everything that went wrong while a page loaded: console errors, failures and off-site requests."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def watch(self, context, page) -> None:
        context.route("**/*", self._route)
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

    def _route(self, route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in {"http", "https", "ws", "wss"} and url.hostname not in LOCAL_HOSTS:
            self.problems.append(f"request leaves localhost: {route.request.url}")
            route.abort()
        else:
            route.continue_()


@pytest.fixture()
def open_page(browser, site_url):
    """Open a page of the site; return (page, problems). The context closes at the end of the test."""
    contexts = []

    def _open(path: str):
        context = browser.new_context(viewport={"width": 1280, "height": 1600})
        contexts.append(context)
        page = context.new_page()
        problems = PageProblems()
        problems.watch(context, page)
        page.goto(f"{site_url}/{path}", wait_until="networkidle")
        return page, problems

    yield _open
    for context in contexts:
        context.close()


# Text of the article outside code, so that a `$` in a code cell is not mistaken for unrendered math.
ARTICLE_TEXT = """() => {
  const article = document.querySelector('article') || document.body;
  const copy = article.cloneNode(true);
  copy.querySelectorAll('pre, code, script, style, mjx-container, .cell_input').forEach(e => e.remove());
  return copy.textContent;
}"""

IMAGES = """() => Array.from(document.querySelectorAll('article img')).map(img => ({
  src: img.currentSrc.slice(0, 80), complete: img.complete, width: img.naturalWidth,
  inWidget: !!img.closest('.jupyter-widgets')
}))"""

# The src of the image each explorer shows: the visible child of its Stack.
VISIBLE_FRAMES = """() => Array.from(document.querySelectorAll('.attnbook-explorer')).map(box =>
  Array.from(box.querySelectorAll('img')).filter(img => img.offsetParent !== null && img.naturalWidth > 0)
       .map(img => img.src))"""

READOUTS = """() => Array.from(document.querySelectorAll('.attnbook-explorer'))
  .map(box => (box.querySelector('.widget-readout') || {}).textContent)"""


def _wait_for(page, problems: PageProblems, expression: str, what: str, arg=None) -> None:
    """Wait until ``expression`` is truthy in the page; on timeout, fail saying what went wrong while loading."""
    try:
        page.wait_for_function(expression, arg=arg, timeout=30_000)
    except Exception as error:  # playwright's TimeoutError
        details = "\n".join(problems.problems) or "no console error or failed request was seen"
        pytest.fail(f"timed out waiting for {what} ({type(error).__name__});\n{details}")


def _wait_for_mathjax(page, problems: PageProblems) -> None:
    _wait_for(page, problems, "() => window.MathJax && MathJax.startup && MathJax.startup.promise", "MathJax")
    page.evaluate("() => MathJax.startup.promise")


def test_chapter_page_renders_offline(open_page) -> None:
    page, problems = open_page(CHAPTER)
    _wait_for_mathjax(page, problems)
    _wait_for(page, problems, "() => document.querySelector('.attnbook-explorer .widget-slider')", "a widget")
    _wait_for(page, problems, "() => Array.from(document.querySelectorAll('article img')).every(i => i.complete)",
              "the images")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chapter2.png"), full_page=False)

    assert not problems.problems, "\n".join(problems.problems)

    images = page.evaluate(IMAGES)
    figures = [image for image in images if not image["inWidget"]]
    assert figures, "the chapter shows no figure outside its widgets"
    broken = [image["src"] for image in images if image["complete"] and image["width"] == 0]
    assert broken == [], f"images that did not load: {broken}"

    assert page.locator("mjx-container").count() > 0, "MathJax rendered no math"
    assert page.locator("mjx-merror").count() == 0, "MathJax reported a TeX error"
    text = page.evaluate(ARTICLE_TEXT)
    for raw in ("$$", "\\(", "\\["):
        assert raw not in text, f"unrendered math delimiter {raw!r} in the page text"

    assert page.locator("text=Error displaying widget").count() == 0
    assert page.locator(".attnbook-explorer").count() >= 1, "no widget explorer was drawn"


def test_every_chapter_page_loads_cleanly(open_page) -> None:
    """Each built chapter: no console error or failed request, every image loaded, no TeX left unrendered."""
    pages = sorted(path.relative_to(SITE).as_posix() for path in (SITE / "chapters").glob("*.html"))
    assert CHAPTER in pages
    for path in pages:
        page, problems = open_page(path)
        if page.locator("mjx-container, .math").count():
            _wait_for_mathjax(page, problems)
        _wait_for(page, problems, "() => Array.from(document.images).every(i => i.complete)", f"images of {path}")
        broken = [image["src"] for image in page.evaluate(IMAGES) if image["width"] == 0]
        assert broken == [], f"{path}: images that did not load: {broken}"
        assert page.locator("mjx-merror").count() == 0, f"{path}: MathJax reported a TeX error"
        assert page.locator("text=Error displaying widget").count() == 0, f"{path}: a widget failed to draw"
        assert not problems.problems, f"{path}:\n" + "\n".join(problems.problems)


def test_moving_a_slider_changes_the_figure(open_page) -> None:
    page, problems = open_page(CHAPTER)
    _wait_for(page, problems, "() => document.querySelector('.attnbook-explorer .widget-slider .noUi-handle')",
              "a widget's slider")
    _wait_for(page, problems, f"() => ({VISIBLE_FRAMES})().every(frames => frames.length === 1)",
              "each explorer to show one figure")
    before, readouts_before = page.evaluate(VISIBLE_FRAMES), page.evaluate(READOUTS)
    sliders = page.locator(".attnbook-explorer .widget-slider .noUi-handle")
    assert sliders.count() == len(before) >= 1
    for i in range(sliders.count()):
        handle = sliders.nth(i)
        handle.scroll_into_view_if_needed()
        handle.focus()
        handle.press("ArrowRight")
        handle.press("ArrowRight")
    _wait_for(page, problems,
              f"(before) => ({VISIBLE_FRAMES})().every((frames, i) => frames.length === 1 && frames[0] !== before[i][0])",
              "the figures to change after moving the sliders", arg=before)
    after, readouts_after = page.evaluate(VISIBLE_FRAMES), page.evaluate(READOUTS)
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
        assert len(new) == 1, f"explorer {i} shows {len(new)} figures at once"
        assert new[0] != old[0], f"explorer {i}: moving the slider did not change the figure"
        assert readouts_after[i] != readouts_before[i], f"explorer {i}: the slider's label did not move"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".attnbook-explorer").first.screenshot(path=str(SCREENSHOTS / "explorer_moved.png"))
    assert not problems.problems, "\n".join(problems.problems)


def test_search_finds_the_chapter(open_page) -> None:
    page, problems = open_page("search.html?q=attention")
    _wait_for(page, problems, "() => document.querySelector('#search-results ul.search li')", "search results")
    results = page.locator("#search-results ul.search li a")
    assert results.count() > 0
    hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any("02_weighted_average" in (href or "") for href in hrefs), hrefs
    assert not problems.problems, "\n".join(problems.problems)


def test_front_page_and_bibliography(open_page) -> None:
    page, problems = open_page("index.html")  # redirects to the introduction
    _wait_for_mathjax(page, problems)
    assert page.url.endswith("book/intro.html")
    assert page.locator("article a[href$='chapters/02_weighted_average.html']").count() >= 1
    assert page.locator("article table tbody tr").count() == 9, "the table of the nine levels is incomplete"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "intro.png"), full_page=True)
    assert not problems.problems, "\n".join(problems.problems)

    page, problems = open_page("book/bibliography.html")
    entries = page.locator("article .citation-list .citation")
    assert entries.count() == len(BIB_KEYS), f"the bibliography lists {entries.count()} of {len(BIB_KEYS)} entries"
    assert not problems.problems, "\n".join(problems.problems)


# The CJK faces the page loaded (the vendored font is split by unicode-range: only subsets in use load).
CJK_FACES = """async () => {
  await document.fonts.ready;
  return Array.from(document.fonts)
    .filter(f => f.family.replace(/["']/g, '') === 'Noto Sans SC' && f.status === 'loaded').length;
}"""


def test_chinese_level_names_render_with_the_web_font(open_page) -> None:
    for path, text in (("book/intro.html", "看山是山"), (CHAPTER, "看山看石")):
        page, problems = open_page(path)
        _wait_for(page, problems, "(t) => document.body.innerText.includes(t)", f"the level name on {path}", text)
        assert page.evaluate(CJK_FACES) >= 1, f"{path}: no subset of the Noto Sans SC web font was loaded"
        covered = page.evaluate("(t) => document.fonts.check('16px \"Noto Sans SC\"', t)", text)
        assert covered, f"{path}: the loaded font faces do not cover {text!r}"
        assert not problems.problems, f"{path}:\n" + "\n".join(problems.problems)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("article h1, article h1 + p").first.screenshot(path=str(SCREENSHOTS / "level_name.png"))
