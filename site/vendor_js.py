"""Vendor the site's JavaScript into site/vendor/ so built pages work with no network.

The pages need four things from npm, pinned in site/package.json and site/package-lock.json:
RequireJS and @jupyter-widgets/html-manager (which draw the widgets saved in the notebooks), MathJax 3
(which renders the math; the SVG output needs no web fonts) and the Noto Sans SC web font from
@fontsource/noto-sans-sc, so that the Chinese level names render on machines without a CJK font. The font is
split by unicode-range into about a hundred small woff2 files: a page downloads only the few that hold its
characters. With npm, `npm ci` installs exactly the locked
versions and the needed files are copied. Without npm, the same pinned files are fetched from the jsDelivr CDN,
which mirrors the npm registry; either way the built site serves these files itself. If the CDN cannot be
reached either, site/vendor/ is left empty and the pages load the pinned files from the CDN when they are
viewed (attnbook_site.py switches the configuration), so the site then needs a network connection.

site/vendor/ is Sphinx's `html_static_path` (see _config.yml), so its contents land in _build/html/_static/:

    requirejs/require.js
    html-manager/embed-amd.js  (+ the Font Awesome files it references, beside it)
    mathjax/tex-svg.js         (+ the components MathJax may load on demand)
    fonts/noto-sans-sc.css     (+ files/*.woff2, the regular weight only)

Usage: python site/vendor_js.py [--force]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

SITE = Path(__file__).resolve().parent
VENDOR = SITE / "vendor"
MODULES = SITE / "node_modules"
CDN = "https://cdn.jsdelivr.net/npm"
STAMP = VENDOR / ".vendored.json"

# package -> files (relative to the package) the site needs; a trailing "/" copies a folder.
NEEDED = {
    "requirejs": {"require.js": "requirejs/require.js"},
    "@jupyter-widgets/html-manager": {"dist/embed-amd.js": "html-manager/embed-amd.js"},
    "mathjax": {
        "es5/tex-svg.js": "mathjax/tex-svg.js",
        "es5/input/tex/extensions/": "mathjax/input/tex/extensions/",
        "es5/a11y/": "mathjax/a11y/",
        "es5/ui/": "mathjax/ui/",
        "es5/sre/": "mathjax/sre/",
        "es5/adaptors/": "mathjax/adaptors/",
    },
}
FONT_FILE = re.compile(r'"([0-9a-f]{20}\.(?:woff2|woff|ttf|eot|svg))"')
# The CJK web font: its regular-weight stylesheet, one @font-face per unicode-range subset.
CJK_FONT = "@fontsource/noto-sans-sc"
CJK_CSS = "fonts/noto-sans-sc.css"
WOFF2_SRC = re.compile(r"src: url\(\./files/([\w.-]+\.woff2)\) format\('woff2'\)[^;]*;")


def locked_versions() -> dict[str, str]:
    """The exact version of each needed package, from package-lock.json."""
    lock = json.loads((SITE / "package-lock.json").read_text())
    return {name: lock["packages"][f"node_modules/{name}"]["version"] for name in (*NEEDED, CJK_FONT)}


def cdn_urls(versions: dict[str, str]) -> dict[str, str]:
    """The view-time CDN addresses of the three scripts, by role (used only when nothing could be vendored)."""
    return {
        "require": f"{CDN}/requirejs@{versions['requirejs']}/require.js",
        "embed": f"{CDN}/@jupyter-widgets/html-manager@{versions['@jupyter-widgets/html-manager']}/dist/embed-amd.js",
        "mathjax": f"{CDN}/mathjax@{versions['mathjax']}/es5/tex-svg.js",
    }


def is_vendored() -> bool:
    """Whether site/vendor holds the scripts the pages load."""
    return all((VENDOR / path).is_file() for path in
               ("requirejs/require.js", "html-manager/embed-amd.js", "mathjax/tex-svg.js", CJK_CSS))


def cjk_stylesheet(css: str) -> tuple[str, list[str]]:
    """Fontsource's stylesheet with woff2 sources only (the woff copies are not vendored); its font files."""
    files = WOFF2_SRC.findall(css)
    if not files:
        raise ValueError(f"{CJK_FONT}: no woff2 @font-face found in its 400.css; has the package layout changed?")
    return WOFF2_SRC.sub(lambda m: f"src: url(./files/{m.group(1)}) format('woff2');", css), files


def copy_entry(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def font_files(embed_amd: Path) -> list[str]:
    """Font files html-manager's bundle loads relative to its own location (Font Awesome)."""
    return sorted(set(FONT_FILE.findall(embed_amd.read_text(encoding="utf-8"))))


def vendor_from_npm() -> None:
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SITE, check=True)
    for package, files in NEEDED.items():
        for source, target in files.items():
            copy_entry(MODULES / package / source, VENDOR / target)
    dist = MODULES / "@jupyter-widgets/html-manager/dist"
    for name in font_files(dist / "embed-amd.js"):
        copy_entry(dist / name, VENDOR / "html-manager" / name)
    css, files = cjk_stylesheet((MODULES / CJK_FONT / "400.css").read_text(encoding="utf-8"))
    (VENDOR / CJK_CSS).parent.mkdir(parents=True, exist_ok=True)
    (VENDOR / CJK_CSS).write_text(css, encoding="utf-8")
    for name in files:
        copy_entry(MODULES / CJK_FONT / "files" / name, VENDOR / "fonts" / "files" / name)


def fetch(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as response:
        target.write_bytes(response.read())


def vendor_from_cdn(versions: dict[str, str]) -> None:
    """Fallback without npm: the same pinned files from jsDelivr (single files only; folders are skipped)."""
    print("vendor: npm not found; fetching the pinned files from the jsDelivr CDN instead", file=sys.stderr)
    for package, files in NEEDED.items():
        for source, target in files.items():
            if source.endswith("/"):
                print(f"vendor: skipped {package}/{source} (on-demand MathJax components need npm)", file=sys.stderr)
                continue
            fetch(f"{CDN}/{package}@{versions[package]}/{source}", VENDOR / target)
    embed = VENDOR / "html-manager/embed-amd.js"
    version = versions["@jupyter-widgets/html-manager"]
    for name in font_files(embed):
        fetch(f"{CDN}/@jupyter-widgets/html-manager@{version}/dist/{name}", VENDOR / "html-manager" / name)
    font = f"{CDN}/{CJK_FONT}@{versions[CJK_FONT]}"
    fetch(f"{font}/400.css", VENDOR / CJK_CSS)
    css, files = cjk_stylesheet((VENDOR / CJK_CSS).read_text(encoding="utf-8"))
    (VENDOR / CJK_CSS).write_text(css, encoding="utf-8")
    for name in files:
        fetch(f"{font}/files/{name}", VENDOR / "fonts" / "files" / name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="vendor again even if up to date")
    args = parser.parse_args()
    versions = locked_versions()
    if not args.force and is_vendored() and STAMP.exists() and json.loads(STAMP.read_text()) == versions:
        print("vendor: site/vendor is up to date")
        return 0
    shutil.rmtree(VENDOR, ignore_errors=True)
    VENDOR.mkdir()
    pinned = ", ".join(f"{name}@{version}" for name, version in versions.items())
    if shutil.which("npm"):
        vendor_from_npm()
        source = "npm"
    else:
        try:
            vendor_from_cdn(versions)
            source = "the jsDelivr CDN"
        except OSError as error:  # URLError and timeouts are OSErrors
            shutil.rmtree(VENDOR)
            VENDOR.mkdir()
            print(f"vendor: neither npm nor the CDN is available ({error}); the built pages will load {pinned} "
                  "from the CDN when viewed, so the site will need a network connection", file=sys.stderr)
            return 0
    STAMP.write_text(json.dumps(versions, indent=1, sort_keys=True))
    print(f"vendor: {pinned} from {source} into site/vendor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
