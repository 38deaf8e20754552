"""The full bAbI 1k table: a memory network per task, test error beside Sukhbaatar et al. (2015), Table 1.

Trains one 3-hop MemN2N (PE, LS, RN) on each of the 20 tasks with the chapter's recipe (Adam, shortened
schedule, restarts trained side by side, the lowest training loss kept) and prints each task's test error beside
the paper's column "PE LS RN", then the mean error, the number of failed tasks (error above 5%) and a JSON line
``{"mean_error": ..., "failed_tasks": ..., "seconds": ...}``. Needs the real data in ``$ATTNBOOK_DATA/babi/en/``.

    python benchmarks/babi_table.py [--tasks 1 2 3] [--epochs 30] [--restarts 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

from attnbook.data.babi import prepare_task
from attnbook.memory import PAPER_PE_LS_RN, Recipe, train_memn2n
from attnbook.repro import set_seed

FAILED_ABOVE = 5.0  # percent, the paper's definition of a failed task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=list(range(1, 21)))
    parser.add_argument("--epochs", type=int, default=30, help="epochs after linear start")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    generator = set_seed(args.seed)
    recipe = Recipe(optimizer="adam", epochs=args.epochs, halve_every=max(1, args.epochs // 4), linear_patience=2)
    print(f"recipe: {recipe}, restarts: {args.restarts}")
    start = time.perf_counter()
    errors: dict[int, float] = {}
    print(f"{'task':>4}  {'error':>7}  {'paper':>7}  {'seconds':>7}")
    for task in args.tasks:
        began = time.perf_counter()
        data = prepare_task(task, generator=generator)
        if "(real)" not in data.source:
            raise SystemExit(f"task {task}: {data.source}; the table needs the real bAbI files")
        result = train_memn2n(data.train, data.val, len(data.vocab), recipe, args.restarts, generator, f"task {task}")
        errors[task] = 100 * result.model.error(data.test)
        print(f"{task:>4}  {errors[task]:>6.1f}%  {PAPER_PE_LS_RN[task]:>6.1f}%  {time.perf_counter() - began:>7.1f}",
              flush=True)
    seconds = time.perf_counter() - start
    mean = sum(errors.values()) / len(errors)
    failed = sum(e > FAILED_ABOVE for e in errors.values())
    paper_mean = sum(PAPER_PE_LS_RN[t] for t in errors) / len(errors)
    paper_failed = sum(PAPER_PE_LS_RN[t] > FAILED_ABOVE for t in errors)
    print(f"mean error {mean:.1f}% (paper {paper_mean:.1f}% on the same tasks); failed tasks {failed} "
          f"(paper {paper_failed}); {seconds:.0f} s")
    print(json.dumps({"mean_error": round(mean, 2), "failed_tasks": failed, "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
