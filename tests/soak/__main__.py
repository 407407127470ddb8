"""`python -m tests.soak --runs N [--seed S]`: N soak runs, one line each, then a Markdown table."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.soak import draw_plan, soak, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description="Seeded random faults over whole runs.")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=1, help="seed of the first run; run i uses seed + i")
    p.add_argument("--quick", action="store_true", help="the CI sizes: smaller targets, fewer faults")
    p.add_argument("--limit", type=float, default=600.0, help="wall-clock limit of one run, in seconds")
    p.add_argument("--keep", type=Path, default=None, help="keep each run's output and logs under DIR")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = args.keep or Path(tempfile.mkdtemp(prefix="soak-"))
    results = []
    try:
        for i in range(args.runs):
            plan = draw_plan(args.seed + i, quick=args.quick)
            workdir = base / f"seed-{plan.seed}"
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
            results.append(soak(plan, workdir, args.limit))
            print(results[-1].line() if results[-1].ok else results[-1].report(), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\n{table(results)}")
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
