"""Time each chapter: execute every notebook in chapters/ in a fresh kernel and print seconds per chapter.

The last line of output is one JSON object, {"02_weighted_average": 41.2, ...}, keyed by notebook stem, for
scripts to read. Each chapter has a CPU budget (the book's promise: about a minute on a 2-core laptop);
chapters over budget are marked, and with --fail-over-budget the script exits 1 if any is.

    python benchmarks/chapter_times.py [--only 02 03] [--fail-over-budget] [--timeout 900]

ATTNBOOK_PROGRESS=0 is set for the kernels; ATTNBOOK_DATA is passed through (unset: generated data runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
# Seconds each chapter may take when it runs alone on 2 CPU cores; keyed by the chapter number.
BUDGET_S = {"01": 90.0, "02": 60.0, "03": 120.0, "04": 120.0, "05": 60.0, "06": 120.0, "07": 90.0,
            "08": 60.0, "09": 90.0, "10": 45.0}


def budget(stem: str) -> float | None:
    """The budget of a notebook from its stem (``02_weighted_average`` -> 60.0); None if it has none."""
    return BUDGET_S.get(stem.split("_", 1)[0])


def run_chapter(path: Path, timeout: float) -> float:
    """Execute one notebook top to bottom in a fresh kernel (cwd = chapters/); return wall-clock seconds."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="run only notebooks whose stem starts with one of these (e.g. 02 03_transformer)")
    parser.add_argument("--fail-over-budget", action="store_true", help="exit 1 if a chapter is over budget")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a cell may run (default 900)")
    args = parser.parse_args(argv)

    os.environ["ATTNBOOK_PROGRESS"] = "0"
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `make book` and `make test` run the chapters
    notebooks = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(prefix) for prefix in args.only)]
    if not notebooks:
        parser.error(f"no chapter notebook matches {args.only or 'chapters/[0-9][0-9]_*.ipynb'}")

    data = "ATTNBOOK_DATA set" if os.environ.get("ATTNBOOK_DATA") else "ATTNBOOK_DATA unset (generated data)"
    print(f"{len(notebooks)} chapter(s), {os.cpu_count()} CPU core(s) visible, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {data}", flush=True)
    seconds: dict[str, float] = {}
    over: list[str] = []
    for path in notebooks:
        elapsed = round(run_chapter(path, args.timeout), 1)
        seconds[path.stem] = elapsed
        limit = budget(path.stem)
        verdict = "no budget" if limit is None else f"budget {limit:.0f} s"
        if limit is not None and elapsed > limit:
            verdict += "  OVER BUDGET"
            over.append(path.stem)
        print(f"{path.stem:<28} {elapsed:8.1f} s   ({verdict})", flush=True)
    if over:
        print(f"over budget: {', '.join(over)}", flush=True)
    print(json.dumps(seconds), flush=True)
    return 1 if over and args.fail_over_budget else 0


if __name__ == "__main__":
    sys.exit(main())
