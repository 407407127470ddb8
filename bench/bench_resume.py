"""What a resumed run pays before it generates again: open the writer over N committed rows, load
their stored vectors, and seed the novelty gate and shards with them, on a local Ray.

    .venv/bin/python bench/bench_resume.py --rows 100000 [--shards 2] [--root DIR]

Rows are made as in bench_writer_resume.py (384-d unit vectors, 1,000 rows per part). The phases
time the same actor calls the driver makes (`build` -> `wait_ready` -> `resume_index`); embedders,
judges and instructors are left out because their start-up does not depend on what was committed.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def commit_rows(root: str, rows: int, dim: int, rows_per_part: int) -> float:
    """Writes `rows` committed rows under `root`; returns the seconds it took."""
    from bench_writer_resume import candidates  # the script directory is on sys.path

    from instructflow.actors.core.writer import PartWriter

    started = time.perf_counter()
    writer = PartWriter(root, rows_per_part=rows_per_part)
    made = candidates(rows, dim)
    for i in range(0, rows, 500):
        writer.add(made[i : i + 500])
    writer.close()
    return time.perf_counter() - started


def resume(root: str, shards: int, dim: int) -> dict[str, Any]:
    """Times the resume path on the actors; returns the phases in seconds and what was loaded."""
    import functools

    import ray

    from instructflow.actors.novelty import GateActor, ShardActor
    from instructflow.actors.stage import StageActor
    from instructflow.actors.writer import writer_stage

    timings: dict[str, Any] = {}
    started = time.perf_counter()
    shard_handles = [ShardActor.options(name=f"bench-resume/shard:{i}").remote(i, dim) for i in range(shards)]
    ray.get([s.__ray_ready__.remote() for s in shard_handles])
    gate = GateActor.remote([f"bench-resume/shard:{i}" for i in range(shards)], 0.9, dim)
    ray.get(gate.stats.remote())
    timings["start_gate_and_shards_s"] = time.perf_counter() - started

    started = time.perf_counter()
    writer = StageActor.remote("writer:0", functools.partial(writer_stage, root, rows_per_part=1000), {})
    stats = ray.get(writer.stats.remote()).detail  # returns once the constructor (recovery) has run
    timings["writer_open_s"] = time.perf_counter() - started

    started = time.perf_counter()
    ids, vectors = ray.get(writer.call.remote("committed_vectors"))
    timings["committed_vectors_s"] = time.perf_counter() - started

    started = time.perf_counter()
    seeded = ray.get(gate.seed.remote(list(ids), vectors))
    timings["seed_gate_and_shards_s"] = time.perf_counter() - started

    started = time.perf_counter()
    probe = vectors[:64]
    ray.get(gate.admit.remote([f"probe-{i}" for i in range(len(probe))], probe))
    timings["first_admission_s"] = time.perf_counter() - started  # a full-index query after seeding

    timings["resume_total_s"] = timings["writer_open_s"] + timings["committed_vectors_s"] + timings["seed_gate_and_shards_s"]
    timings.update(committed_rows=sum(stats.committed.values()), parts=stats.parts, vectors=list(vectors.shape), seeded=seeded)
    for handle in [writer, gate, *shard_handles]:
        ray.kill(handle, no_restart=True)
    return timings


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--rows-per-part", type=int, default=1000)
    parser.add_argument("--root", default=None, help="output root (default: a temp dir, removed after)")
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="bench-resume-")
    result: dict[str, Any] = {"rows": args.rows, "dim": args.dim, "shards": args.shards}
    result["commit_s"] = commit_rows(root, args.rows, args.dim, args.rows_per_part)
    started = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="instructflow", logging_level="WARNING")
    result["ray_init_s"] = time.perf_counter() - started
    try:
        result.update(resume(root, args.shards, args.dim))
    finally:
        ray.shutdown()
        if args.root is None:
            shutil.rmtree(root)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
