"""Benchmark: time and peak memory of five ways to compute attention as the sequence grows (chapter 9).

Cases, on one head of queries, keys and values of shape (1, 1, n, 64), float32, one thread:

- ``naive``: `attnbook.core.attention`, which materialises the (n, n) scores and weights;
- ``tiled``: `attnbook.variants.tiled_attention` (online softmax over key blocks; exact);
- ``sdpa``: `torch.nn.functional.scaled_dot_product_attention` (a fused kernel; exact; the limit);
- ``linear``: `attnbook.variants.linear_attention` (elu + 1 feature map; a different model, O(n));
- ``window``: `attnbook.variants.sliding_window_attention` with a window of 128 (a different model, O(n·w)).

Each (case, n) runs in its own Python process, so one case's allocations cannot hide another's. Time: median of
5 calls after one warm-up call, in CPU seconds of the process (`time.process_time`; with one thread this is the
work done, and other programs on a shared machine do not inflate it as they do wall-clock time). Memory: the process's peak resident set size (Linux VmHWM, reset
through /proc/self/clear_refs after the inputs are built) minus its resident size before the calls, in MiB —
everything the calls allocated at their peak (intermediates and output, page-granular), not the inputs.
A case whose estimated memory exceeds --max-mib is skipped (null).

    python benchmarks/attention_scaling.py [--sizes 256 512 ... 16384] [--max-mib 2048]

Prints a table and the checks of chapter 9's targets, then one JSON line:
{"n": [...], "naive_s": [...], ..., "window_mib": [...]} with lists aligned with "n".
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = ("naive", "tiled", "sdpa", "linear", "window")
ROOT = Path(__file__).resolve().parents[1]
D, WINDOW, BLOCK = 64, 128, 128


def estimated_mib(case: str, n: int) -> float:
    """A rough upper estimate of the memory a case needs (to skip what would not fit)."""
    per_row = {"naive": 3 * n, "tiled": 4 * BLOCK, "sdpa": 4 * 512, "linear": 4 * D, "window": 12 * WINDOW}[case]
    return 4 * n * (per_row + 4 * D) / 2**20


def _status(field: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_case(case: str, n: int, repeats: int) -> dict[str, float]:
    """Run one case in this process: returns {"seconds": median, "mib": peak extra resident memory}."""
    import torch
    import torch.nn.functional as F

    from attnbook.core import attention
    from attnbook.variants import (
        linear_attention,
        sliding_window_attention,
        tiled_attention,
    )

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(n)
    q, k, v = (torch.randn(1, 1, n, D, generator=generator) for _ in range(3))
    with torch.no_grad():
        tiny = (q[..., :16, :], k[..., :16, :], v[..., :16, :])
        call_on = {"naive": lambda a, b, c: attention(a, b, c)[0],
                   "tiled": lambda a, b, c: tiled_attention(a, b, c, block_size=BLOCK),
                   "sdpa": F.scaled_dot_product_attention, "linear": linear_attention,
                   "window": lambda a, b, c: sliding_window_attention(a, b, c, WINDOW)}[case]
        call_on(*tiny)  # first-call set-up (kernels, workspaces) is not the case's memory
        before = _status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
        out = call_on(q, k, v)  # the warm-up call is also the memory measurement
        peak = _status("VmHWM")
        del out
        times = []
        for _ in range(repeats):
            start = time.process_time()
            call_on(q, k, v)
            times.append(time.process_time() - start)
    return {"seconds": statistics.median(times), "mib": (peak - before) / 2**20}


def measure(case: str, n: int, repeats: int) -> dict[str, float]:
    """Run one case in a fresh Python process and read its result back."""
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.attention_scaling import run_case; "
            f"print(json.dumps(run_case({case!r}, {n}, {repeats})))")
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def fitted_exponent(sizes: list[int], seconds: list[float | None], min_n: int = 1024) -> float:
    """The slope of log(time) against log(n) by least squares, over n >= min_n (nan with fewer than 2 points)."""
    points = [(math.log(n), math.log(s)) for n, s in zip(sizes, seconds) if n >= min_n and s]
    if len(points) < 2:
        return math.nan
    mean_x, mean_y = statistics.fmean(p[0] for p in points), statistics.fmean(p[1] for p in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-mib", type=float, default=2048.0, help="skip a case estimated to need more")
    args = parser.parse_args(argv)
    results: dict[str, list] = {"n": args.sizes, **{f"{c}_{u}": [] for u in ("s", "mib") for c in CASES}}
    print(f"{'n':>6} " + " ".join(f"{c + ' s':>10} {c + ' MiB':>11}" for c in CASES), flush=True)
    for n in args.sizes:
        row = []
        for case in CASES:
            got = None if estimated_mib(case, n) > args.max_mib else measure(case, n, args.repeats)
            results[f"{case}_s"].append(None if got is None else round(got["seconds"], 6))
            results[f"{case}_mib"].append(None if got is None else round(got["mib"], 2))
            row.append("skipped".rjust(22) if got is None else f"{got['seconds']:10.4f} {got['mib']:11.1f}")
        print(f"{n:>6} " + " ".join(row), flush=True)
    if 8192 in args.sizes:
        i = args.sizes.index(8192)
        naive_s, tiled_s, naive_mib, tiled_mib = (results[k][i] for k in ("naive_s", "tiled_s", "naive_mib", "tiled_mib"))
        if None not in (naive_s, tiled_s, naive_mib, tiled_mib):
            print(f"n = 8192: tiled/naive memory {tiled_mib / naive_mib:.3f} (target <= 0.1), "
                  f"time {tiled_s / naive_s:.2f} (target <= 1); sdpa is {naive_s / results['sdpa_s'][i]:.1f}x "
                  f"faster than naive and {tiled_s / results['sdpa_s'][i]:.1f}x faster than tiled")
    if sum(n >= 1024 for n in args.sizes) >= 2:
        print(f"fitted time exponent over n >= 1024: linear {fitted_exponent(args.sizes, results['linear_s']):.2f} "
              f"(target <= 1.2), naive {fitted_exponent(args.sizes, results['naive_s']):.2f}, "
              f"tiled {fitted_exponent(args.sizes, results['tiled_s']):.2f}, "
              f"sdpa {fitted_exponent(args.sizes, results['sdpa_s']):.2f}, "
              f"window {fitted_exponent(args.sizes, results['window_s']):.2f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
