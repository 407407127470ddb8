"""`instructflow merge` on two synthetic runs that share rows: time, peak memory, rows kept.

    .venv/bin/python bench/bench_merge.py --rows 100000 [--root /tmp/bench-merge] [--keep]

Writes two runs of N rows each (384-d unit embeddings, parts of 1,000 rows) with the real
PartWriter. The second run shares rows with the first: `--exact` of them are the same instructions
(changed only in case and punctuation), `--near` are new instructions whose embedding has cosine 0.95
to one of the first run's; the rest are unrelated (random vectors, cosine < 0.4 to everything).
The merge then runs as `instructflow merge A B --out C` in a child process, so its peak RSS is its
own. A second pass kills a merge after half of the parts and resumes it, and checks that the output
is byte-identical. Prints one line per pass.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate

ANSWER = "A reasonably long answer that a teacher might have written. " * 8


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def near_to(rng: np.random.Generator, vectors: np.ndarray, cosine: float) -> np.ndarray:
    """Unit vectors at exactly `cosine` to each row of `vectors`."""
    other = unit_rows(rng, len(vectors), vectors.shape[1])
    other -= np.sum(other * vectors, axis=1, keepdims=True) * vectors
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    return (cosine * vectors + np.sqrt(1 - cosine**2) * other).astype(np.float32)


def write_run(root: Path, texts: list[str], vectors: np.ndarray, run_id: str) -> None:
    writer = PartWriter(str(root), rows_per_part=1000, run_id=run_id)
    for start in range(0, len(texts), 1000):
        writer.add(
            Candidate(category=("general", "trivia", "coding")[i % 3], instruction=texts[i], response=ANSWER,
                      model="bench-teacher", embedding=vectors[i], score=float(i % 11))
            for i in range(start, min(start + 1000, len(texts)))
        )
    writer.close()
    (root / "run.json").write_text(json.dumps({"run_id": run_id}))
    config = {"teacher": {"model": "bench-teacher"}, "novelty": {"model": "all-MiniLM-L6-v2", "threshold": 0.9}}
    (root / "config.effective.yaml").write_text(yaml.safe_dump(config))


def synthesise(base: Path, rows: int, exact: int, near: int, dim: int) -> None:
    rng = np.random.default_rng(7)
    a_vectors = unit_rows(rng, rows, dim)
    a_texts = [f"Instruction {i} of the first run: explain topic {i}." for i in range(rows)]
    write_run(base / "a", a_texts, a_vectors, "bench-a")
    picks = rng.permutation(rows)[: exact + near]
    b_texts = [a_texts[p].upper().replace(":", " -") for p in picks[:exact]]  # same normalised text
    b_texts += [f"Reworded instruction {i} of the second run." for i in range(near)]
    b_texts += [f"Instruction {i} of the second run: something new." for i in range(rows - exact - near)]
    b_vectors = np.concatenate([
        a_vectors[picks[:exact]], near_to(rng, a_vectors[picks[exact:]], 0.95), unit_rows(rng, rows - exact - near, dim),
    ])
    order = rng.permutation(rows)  # shared rows spread over every part of the second run
    write_run(base / "b", [b_texts[i] for i in order], b_vectors[order], "bench-b")


def run_merge(base: Path, out: Path, kill_at_parts: int | None = None) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MiB, printed summary) of one `instructflow merge` child
    process; with `kill_at_parts`, SIGKILL it once its manifest lists that many parts. CPU seconds
    (user + system) are what the merge costs on a machine it has to itself; wall time also counts
    waiting for cores other processes hold."""
    command = [sys.executable, "-m", "instructflow.cluster.cli", "merge", str(base / "a"), str(base / "b"), "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    manifest = out / "manifest.jsonl"
    while kill_at_parts is not None and child.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= kill_at_parts:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)  # polling a file another process writes; the kill point need not be exact
    printed, _ = child.communicate()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if kill_at_parts is None and child.returncode != 0:
        raise SystemExit(f"merge failed ({child.returncode})")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu, after.ru_maxrss / 1024, printed.strip()  # ru_maxrss: the largest child so far


def manifest_digests(root: Path) -> list[tuple[str, str]]:
    return [(e["file"], e["sha256"]) for e in map(json.loads, (root / "manifest.jsonl").read_text().splitlines())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in each input")
    parser.add_argument("--exact", type=int, default=20_000, help="rows of the second run that repeat the first")
    parser.add_argument("--near", type=int, default=10_000, help="rows of the second run near one of the first")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--root", default=None, help="working folder (default: a temp dir, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    base = Path(args.root or tempfile.mkdtemp(prefix="bench-merge-"))
    base.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    synthesise(base, args.rows, args.exact, args.near, args.dim)
    print(f"synthesised 2 x {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
    seconds, cpu, peak, printed = run_merge(base, base / "merged")
    expected = 2 * args.rows - args.exact - args.near
    print(f"merge: {seconds:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak:,.0f} MiB; expected {expected:,} rows kept")
    print(printed)
    run_merge(base, base / "resumed", kill_at_parts=len(manifest_digests(base / "merged")) // 2)
    done = base / "resumed" / "manifest.jsonl"
    kept_before = len(done.read_text().splitlines()) if done.exists() else 0
    seconds, cpu, _, printed = run_merge(base, base / "resumed")
    same = manifest_digests(base / "resumed") == manifest_digests(base / "merged")
    print(f"killed after {kept_before} output parts, resumed in {seconds:.1f} s wall, {cpu:.1f} s CPU; output identical: {same}")
    print(printed.splitlines()[0])
    if not args.keep and args.root is None:
        shutil.rmtree(base)
    if not same:
        raise SystemExit("the resumed merge differs from the uninterrupted one")


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
