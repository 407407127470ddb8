"""Pipeline throughput against its two bounds, measured side by side in one run.

    .venv/bin/python bench/bench_pipeline.py [--concurrency 64] [--latency 1.0] [--rows-per-call 5]

1. Starts the stub teacher in its own process (latency L, no faults).
2. Encoder bound: raw `SentenceTransformer.encode` rate on the same kind of texts, same cores.
3. Teacher bound: C concurrent requests / L seconds x rows per call.
4. Runs the real pipeline (trivia, one call gives `rows-per-call` rows) on a local Ray and takes
   the steady-state accepted rows/s from the manifest's commit times (10% -> 90% of the target).
5. Novelty stage alone: pre-made candidates pushed through queue -> worker -> gate -> shards,
   compared with the raw encoder rate on the same texts.
Prints one JSON object; docs/benchmarks.md records the results and this command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "instructflow.instructors.teacher.stub", "--port", "0", "--seed", "11",
         "--latency", str(latency)],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()  # "stub teacher listening on http://127.0.0.1:PORT/v1"
    return proc, line.strip().rsplit(" ", 1)[-1]


async def sample_texts(base_url: str, calls: int, per_call: int) -> list:
    """Real trivia candidates from the stub, parsed by the real instructor."""
    from instructflow.cluster.config import TeacherConfig
    from instructflow.instructors.registry import get_instructor
    from instructflow.instructors.teacher.client import TeacherClient

    trivia = get_instructor("trivia")
    instr = trivia(trivia.Params(count=1, batch_size=per_call))
    teacher = TeacherClient(TeacherConfig(base_url=base_url, model="stub", api_key_env=None), base_url=base_url)
    sem = asyncio.Semaphore(64)

    async def one():
        async with sem:
            return await instr.generate(teacher)

    batches = await asyncio.gather(*[one() for _ in range(calls)])
    await teacher.aclose()
    seen, cands = set(), []
    for c in (c for b in batches for c in b):
        if c.id not in seen:
            seen.add(c.id)
            cands.append(c)
    return cands


def encoder_rate(texts: list[str], threads: int) -> float:
    from instructflow.actors.core.embedder import Embedder

    emb = Embedder(threads=threads)
    emb.encode(texts[:128])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), 64):
        emb.encode(texts[i : i + 64])
    return len(texts) / (time.perf_counter() - started)


def steady_rate(out: Path, target: int) -> float:
    entries = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines() if x.strip()]
    total, points = 0, []
    for e in entries:
        total += e["rows"]
        points.append((datetime.fromisoformat(e["created_at"]).timestamp(), total))
    lo = next(p for p in points if p[1] >= 0.1 * target)
    hi = next(p for p in points if p[1] >= 0.9 * target)
    return (hi[1] - lo[1]) / max(hi[0] - lo[0], 1e-9)


def run_pipeline(base_url: str, args: argparse.Namespace, out: Path) -> dict:
    import yaml

    from instructflow.cluster.config import parse_config
    from instructflow.cluster.driver import run

    data = {
        "run": {"output_dir": str(out), "display": "plain"},
        "teacher": {"base_url": base_url, "model": "stub", "api_key_env": None, "max_tokens": 256,
                    "limits": {"max_in_flight": args.concurrency}},
        "topics": {"file": None},
        "novelty": {"shards": 2, "batch_size": 64, "torch_threads": 2},
        "writer": {"rows_per_part": 200, "flush_interval_s": 1.0, "keep_rejects": False},
        "queues": {"novelty": 4096, "judge": 4096, "writer": 8192},
        "categories": {"trivia": {"count": args.rows, "batch_size": args.rows_per_call,
                                  "concurrency": args.concurrency}},
    }
    started = time.perf_counter()
    progress = run(parse_config(yaml.safe_dump(data)))
    return {"wall_s": time.perf_counter() - started, "committed": dict(progress.committed),
            "steady_rows_per_s": steady_rate(out, args.rows), "rejects": dict(progress.rejects)}


def novelty_rate(cands: list, threads: int) -> float:
    """Candidates/s through queue -> novelty worker -> gate -> shards -> judge queue."""
    import ray
    import yaml

    from instructflow.actors.novelty import GateActor, NoveltyWorker, ShardActor
    from instructflow.actors.queue import QueueActor
    from instructflow.cluster.config import parse_config

    config = parse_config(yaml.safe_dump({
        "novelty": {"shards": 2, "batch_size": 64, "torch_threads": threads},
        "writer": {"keep_rejects": False}, "categories": {"trivia": {"count": 1}},
    }))
    queues = {"novelty": QueueActor.remote("novelty", len(cands) + 1),
              "judge": QueueActor.remote("judge", len(cands) + 1),
              "answer:trivia": QueueActor.remote("answer:trivia", len(cands) + 1)}
    shards = [ShardActor.options(name=f"bench/shard:{i}").remote(i, 384) for i in range(2)]
    ray.get([s.contents.remote() for s in shards])  # started (and kept alive by these handles)
    gate = GateActor.remote([f"bench/shard:{i}" for i in range(2)], 0.9)
    worker = NoveltyWorker.options(num_cpus=1).remote(config, queues, gate, None)
    ray.get(worker.stats.remote())  # model loaded
    started = time.perf_counter()
    ray.get(queues["novelty"].put_batch.remote(cands))
    loop = worker.run.remote()
    while True:  # done when every candidate was taken and passed on (admitted or rejected)
        stats = ray.get(worker.stats.remote())
        if stats["taken"] - stats["held"] >= len(cands):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    ray.get(queues["novelty"].close.remote())
    ray.get(loop)
    return len(cands) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--rows-per-call", type=int, default=5)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()

    import ray

    stub, base_url = start_stub(args.latency)
    try:
        cands = asyncio.run(sample_texts(base_url, calls=600, per_call=5))
        texts = [c.instruction for c in cands]
        raw = encoder_rate(texts, threads=2)
        teacher_bound = args.concurrency / args.latency * args.rows_per_call
        result = {"cpus": os.cpu_count(), "texts": len(texts), "encoder_rows_per_s": round(raw, 1),
                  "teacher_bound_rows_per_s": teacher_bound, "ideal_rows_per_s": round(min(raw, teacher_bound), 1)}
        ray.init(address="local", num_cpus=4, include_dashboard=False, namespace="instructflow", logging_level="WARNING")
        nov = novelty_rate(cands[:2000], threads=2)
        result["novelty_rows_per_s"] = round(nov, 1)
        result["novelty_vs_encoder"] = round(nov / raw, 3)
        if not args.skip_pipeline:
            with tempfile.TemporaryDirectory() as tmp:
                pipe = run_pipeline(base_url, args, Path(tmp) / "out")
            result.update({k: v for k, v in pipe.items() if k != "rejects"})
            result["pipeline_vs_ideal"] = round(pipe["steady_rows_per_s"] / result["ideal_rows_per_s"], 3)
            result["rejects"] = pipe["rejects"]
        ray.shutdown()
        print(json.dumps(result, indent=2))
    finally:
        stub.terminate()


if __name__ == "__main__":
    main()
