"""Pipeline throughput against its two bounds, measured side by side in one run.

    .venv/bin/python bench/bench_pipeline.py [--concurrency 64] [--latency 1.0] [--rows-per-call 5]
        [--embedders N] [--torch-threads N] [--batch-size 256] [--encode-batch-size 32]
        [--precision auto] [--skip-novelty] [--skip-pipeline]

1. Starts the stub teacher in its own process (latency L, no faults).
2. Encoder bound: the best raw `SentenceTransformer.encode` rate on the same texts and cores, with
   the pipeline's encoder settings (chunk, forward pass, precision), of one process using every
   core and one single-threaded process per core. The same in float32 with one forward pass per
   chunk is printed beside it, for reference.
3. Teacher bound: C concurrent requests / L seconds x rows per call (as parsed from real replies).
4. Runs the real pipeline (trivia, one call gives `rows-per-call` rows) on a local Ray and takes
   the steady-state accepted rows/s from the manifest's commit times (10% -> 90% of the target).
5. Novelty stage alone: pre-made candidates pushed through queue -> worker -> gate -> shards, in
   the layout of the best raw rate and 2,000 per worker (as many as each raw process encodes),
   compared with that raw encoder rate.
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
from typing import Any

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
    from instructflow.config import TeacherConfig
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
    return cands, sum(map(len, batches)) / calls


def _encode_timed(texts: list[str], threads: int, barrier: Any, enc: dict) -> float:
    from instructflow.actors.core.embedder import Embedder

    emb = Embedder(threads=threads, precision=enc["precision"])
    emb.encode(texts[:128])  # warm-up
    if barrier is not None:
        barrier.wait()
    started = time.perf_counter()
    for i in range(0, len(texts), enc["batch"]):
        emb.encode(texts[i : i + enc["batch"]], enc["forward"])
    return time.perf_counter() - started


def encoder_rate(texts: list[str], threads: int, processes: int, enc: dict) -> float:
    """Raw `SentenceTransformer.encode` rows/s on `texts` in chunks of `enc["batch"]` (forward passes
    of `enc["forward"]`, in `enc["precision"]`): one process with `threads` threads, or `processes`
    processes (started together) each encoding all of `texts`."""
    if processes == 1:
        return len(texts) / _encode_timed(texts, threads, None, enc)
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(processes) as pool:
        barrier = manager.Barrier(processes)
        walls = pool.starmap(_encode_timed, [(texts, threads, barrier, enc)] * processes)
    return processes * len(texts) / max(walls)


def best_encoder_rate(texts: list[str], enc: dict) -> dict[str, float]:
    """Rows/s by layout: one process using every core, or one single-threaded process per core
    (torch scales sub-linearly with threads, so the second is often faster)."""
    cores = os.cpu_count() or 1
    return {f"1x{cores}": encoder_rate(texts, cores, 1, enc), f"{cores}x1": encoder_rate(texts, 1, cores, enc)}


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

    import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
    from instructflow.cluster.driver import run
    from instructflow.config import parse_config

    data = {
        "run": {"output_dir": str(out), "display": "plain"},
        "teacher": {"base_url": base_url, "model": "stub", "api_key_env": None, "max_tokens": 256,
                    "limits": {"max_in_flight": args.concurrency}},
        "topics": {"file": None},
        "novelty": {"shards": 2, "batch_size": args.batch_size, "embedders": args.embedders,
                    "torch_threads": args.torch_threads, "encode_batch_size": args.encode_batch_size,
                    "precision": args.precision},
        "writer": {"rows_per_part": 200, "flush_interval_s": 1.0, "keep_rejects": False},
        "queues": {"novelty": 4096, "judge": 4096, "writer": 8192},
        "categories": {"trivia": {"count": args.rows, "batch_size": args.rows_per_call,
                                  "concurrency": args.concurrency}},
    }
    started = time.perf_counter()
    progress = run(parse_config(yaml.safe_dump(data)))
    return {"wall_s": time.perf_counter() - started, "committed": dict(progress.committed),
            "steady_rows_per_s": steady_rate(out, args.rows), "rejects": dict(progress.rejects)}


def novelty_rate(cands: list, threads: int, workers: int, args: argparse.Namespace) -> float:
    """Candidates/s through queue -> novelty workers -> gate -> shards -> judge queue."""
    import functools

    import ray
    import yaml

    import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
    from instructflow.actors.novelty import GateActor, ShardActor, novelty_stage
    from instructflow.actors.queue import QueueActor
    from instructflow.actors.stage import LedgerActor, StageActor
    from instructflow.config import parse_config

    config = parse_config(yaml.safe_dump({
        "novelty": {"shards": 2, "batch_size": args.batch_size, "torch_threads": threads,
                    "encode_batch_size": args.encode_batch_size, "precision": args.precision},
        "writer": {"keep_rejects": False}, "categories": {"trivia": {"count": 1}},
    }))
    names = {"input": "bench/queue:novelty", "judge": "bench/queue:judge",
             "answer:trivia": "bench/queue:answer:trivia", "ledger": "bench/ledger"}
    queues = {"novelty": QueueActor.options(name=names["input"]).remote("novelty", len(cands) + 1),
              "judge": QueueActor.options(name=names["judge"]).remote("judge", len(cands) + 1),
              "answer:trivia": QueueActor.options(name=names["answer:trivia"]).remote("answer:trivia", len(cands) + 1)}
    books = LedgerActor.options(name=names["ledger"]).remote()
    shards = [ShardActor.options(name=f"bench/shard:{i}").remote(i, 384) for i in range(2)]
    ray.get([s.contents.remote() for s in shards])  # started (and kept alive by these handles)
    gate = GateActor.options(name="bench/gate").remote([f"bench/shard:{i}" for i in range(2)], 0.9)
    recipe = functools.partial(novelty_stage, config, "bench/gate")
    pool = [StageActor.options(num_cpus=threads).remote(f"novelty:{i}", recipe, names) for i in range(workers)]
    ray.get([w.stats.remote() for w in pool])  # models loaded
    # The stage's work starts with the candidates in its queue (the raw encoder's texts are in
    # memory before its clock starts too); the put itself is the producers' work.
    ray.get(queues["novelty"].put_batch.remote(cands))
    ray.get(queues["novelty"].close.remote())  # the workers drain the queue, then their loops end
    started = time.perf_counter()
    ray.get([w.run.remote() for w in pool])  # (no polling while timed: it would take CPU from them)
    elapsed = time.perf_counter() - started
    total = ray.get(books.snapshot.remote())[0]
    decided = sum(total.passed.values()) + sum(total.rejected.values())
    assert decided == len(cands), f"{decided} of {len(cands)} candidates were admitted or rejected"
    for actor in [*pool, gate, books, *shards, *queues.values()]:
        ray.kill(actor)
    return len(cands) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--rows-per-call", type=int, default=5)
    parser.add_argument("--rows", type=int, default=8000, help="target rows of the pipeline run (long enough for a steady state)")
    parser.add_argument("--embedders", type=int, default=os.cpu_count() or 1,
                        help="novelty.embedders in the pipeline run (default: one per core)")
    parser.add_argument("--torch-threads", type=int, default=1, help="novelty.torch_threads in the pipeline run")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="novelty.batch_size, and the raw encoder's chunks")
    parser.add_argument("--encode-batch-size", type=int, default=32,
                        help="novelty.encode_batch_size, and the raw encoder's forward passes")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="novelty.precision, and the raw encoder's")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-novelty", action="store_true", help="skip the novelty-stage-alone measurement")
    args = parser.parse_args()

    import ray

    stub, base_url = start_stub(args.latency)
    try:
        cores = os.cpu_count() or 1
        # 2,000 distinct texts per core: the raw encoder encodes 2,000 in each process, and the
        # novelty stage alone gets as many in all, so both measure the same amount of work.
        calls = max(200, -(-2200 * cores // args.rows_per_call))
        cands, per_call = asyncio.run(sample_texts(base_url, calls=calls, per_call=args.rows_per_call))
        texts = [c.instruction for c in cands][:2000]
        from instructflow.actors.core.embedder import resolve_precision

        precision = resolve_precision(args.precision, "cpu")
        # The encoder bound: the best raw rate these cores give with the pipeline's own encoder
        # settings. For reference, the same in float32 with one forward pass per chunk (the
        # settings before `precision` and `encode_batch_size` existed).
        enc = {"batch": args.batch_size, "forward": args.encode_batch_size, "precision": precision}
        raw_by = best_encoder_rate(texts, enc)
        raw = max(raw_by.values())
        plain = best_encoder_rate(texts, {"batch": args.batch_size, "forward": args.batch_size, "precision": "float32"})
        teacher_bound = args.concurrency / args.latency * per_call
        result = {"cpus": os.cpu_count(), "texts": len(texts), "parsed_rows_per_call": per_call,
                  "encoder": enc,
                  "encoder_rows_per_s_by_layout": {k: round(v, 1) for k, v in raw_by.items()},
                  "encoder_rows_per_s": round(raw, 1),
                  "float32_one_pass_encoder_rows_per_s_by_layout": {k: round(v, 1) for k, v in plain.items()},
                  "teacher_bound_rows_per_s": round(teacher_bound, 1),
                  "ideal_rows_per_s": round(min(raw, teacher_bound), 1),
                  "ideal_with_float32_one_pass_encoder": round(min(max(plain.values()), teacher_bound), 1)}
        ray.init(address="local", num_cpus=4, include_dashboard=False, namespace="instructflow", logging_level="WARNING")
        time.sleep(5)  # let Ray's own start-up work finish before anything is timed
        if not args.skip_novelty:
            # The novelty stage in the same layout as the best raw rate, against that rate.
            workers, threads = (1, cores) if raw == raw_by[f"1x{cores}"] else (cores, 1)
            nov = novelty_rate(cands[: 2000 * workers], threads=threads, workers=workers, args=args)
            result["novelty_layout"] = f"{workers}x{threads}"
            result["novelty_rows_per_s"] = round(nov, 1)
            result["novelty_vs_encoder"] = round(nov / raw, 3)
        if not args.skip_pipeline:
            with tempfile.TemporaryDirectory() as tmp:
                pipe = run_pipeline(base_url, args, Path(tmp) / "out")
            result["pipeline_layout"] = f"{args.embedders}x{args.torch_threads}"
            result.update({k: v for k, v in pipe.items() if k != "rejects"})
            result["pipeline_vs_ideal"] = round(pipe["steady_rows_per_s"] / result["ideal_rows_per_s"], 3)
            result["rejects"] = pipe["rejects"]
        ray.shutdown()
        print(json.dumps(result, indent=2))
    finally:
        stub.terminate()


if __name__ == "__main__":
    main()
