"""Vendor the site's JavaScript into site/vendor/ so built pages work with no network.

The pages need three things from npm, pinned in site/package.json and site/package-lock.json:
RequireJS and @jupyter-widgets/html-manager (which draw the widgets saved in the notebooks) and MathJax 3
(which renders the math; the SVG output needs no web fonts). With npm, `npm ci` installs exactly the locked
versions and the needed files are copied. Without npm, the same pinned files are fetched from the jsDelivr CDN,
which mirrors the npm registry; either way the built site serves these files itself. If the CDN cannot be
reached either, site/vendor/ is left empty and the pages load the pinned files from the CDN when they are
viewed (attnbook_site.py switches the configuration), so the site then needs a network connection.

site/vendor/ is Sphinx's `html_static_path` (see _config.yml), so its contents land in _build/html/_static/:

    requirejs/require.js
    html-manager/embed-amd.js  (+ the Font Awesome files it references, beside it)
    mathjax/tex-svg.js         (+ the components MathJax may load on demand)

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


def locked_versions() -> dict[str, str]:
    """The exact version of each needed package, from package-lock.json."""
    lock = json.loads((SITE / "package-lock.json").read_text())
    return {name: lock["packages"][f"node_modules/{name}"]["version"] for name in NEEDED}


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
               ("requirejs/require.js", "html-manager/embed-amd.js", "mathjax/tex-svg.js"))


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
