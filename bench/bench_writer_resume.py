"""Writer throughput and resume cost: commit N rows, then reopen and load every stored vector.

    .venv/bin/python bench/bench_writer_resume.py --rows 100000 [--root /tmp/bench-writer]

Prints one line: commit rate, reopen time (manifest + id/category columns of every part) and the
time to load all embeddings as one matrix (what a resumed run seeds its novelty index with).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np

from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate


def candidates(n: int, dim: int) -> list[Candidate]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    answer = "A reasonably long answer. " * 20
    return [
        Candidate(category=("general", "trivia")[i % 2], instruction=f"Instruction number {i}: explain it.",
                  response=answer, model="stub", embedding=vectors[i], similarity=0.4)
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rows-per-part", type=int, default=1000)
    parser.add_argument("--root", default=None, help="output root (default: a temp dir, removed after)")
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="bench-writer-")
    rows = candidates(args.rows, args.dim)
    started = time.perf_counter()
    writer = PartWriter(root, rows_per_part=args.rows_per_part)
    for i in range(0, len(rows), 500):
        writer.add(rows[i : i + 500])
    writer.close()
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    reopened = PartWriter(root, rows_per_part=args.rows_per_part)
    reopen_s = time.perf_counter() - started
    started = time.perf_counter()
    ids, vectors = reopened.committed_vectors()
    vectors_s = time.perf_counter() - started
    print(f"rows={args.rows} parts={len(reopened.entries)} commit={write_s:.2f}s ({args.rows / write_s:,.0f} rows/s) "
          f"reopen={reopen_s:.2f}s vectors={vectors_s:.2f}s shape={vectors.shape}")
    if args.root is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
