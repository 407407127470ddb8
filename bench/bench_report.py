"""Time of `instructflow report` on a synthetic run of N rows (384-d embeddings, 20 categories).

    .venv/bin/python bench/bench_report.py --rows 20000 [--compare ../shared/data/self-instruct/seed_tasks.jsonl]

Prints the time to read the rows, the all-pairs neighbour scan (nearest neighbours and
near-duplicate pairs, the O(n^2 d) part) and the whole report, as wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate
from instructflow.report.build import write_report
from instructflow.report.data import read_run
from instructflow.report.measures import neighbour_scan

T = TypeVar("T")

WORDS = np.array(["the", "a", "river", "stone", "lamp", "orbit", "violin", "garden", "copper", "signal", "harbor", "lemon", "thunder", "atlas", "maple", "quartz", "explain", "write", "list", "compare", "why", "how", "describe", "summarise", "poem", "story", "code", "function"])


def make_run(root: Path, rows: int, dim: int = 384) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(rows, dim)).astype(np.float32)
    vectors[1::50] = vectors[::50][: len(vectors[1::50])] + 0.1 * vectors[1::50]  # some near-duplicates
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    writer = PartWriter(str(root), rows_per_part=1000, run_id="bench")
    writer.add(
        Candidate(
            category=f"category-{i % 20:02d}", instruction=f"{i} " + " ".join(rng.choice(WORDS, 12)),
            response=" ".join(rng.choice(WORDS, 60 + i % 200)), model="stub", prompt_tokens=120,
            completion_tokens=300, score=7.0, embedding=vectors[i],
        )
        for i in range(rows)
    )
    writer.close()


def timed(action: Callable[[], T]) -> tuple[T, float, float]:
    """(result, wall seconds, CPU seconds of this process) of `action()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--compare", default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        make_run(root / "run", args.rows)
        (run, _), read_s, read_cpu = timed(lambda: read_run(str(root / "run")))
        _, scan_s, scan_cpu = timed(lambda: neighbour_scan(run.vectors, 0.9))
        report, total_s, total_cpu = timed(lambda: write_report(str(root / "run"), root / "report", args.compare))
        print(
            f"{args.rows} rows: read {read_s:.1f} s ({read_cpu:.1f} s CPU), neighbour scan {scan_s:.1f} s "
            f"({scan_cpu:.1f} s CPU), whole report {total_s:.1f} s ({total_cpu:.1f} s CPU), "
            f"page {report.page.stat().st_size / 1e6:.1f} MB"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
