"""What a kept row costs, and how fast a run goes through random 429s: side by side in one run.

    .venv/bin/python bench/bench_cost.py [--rows 200] [--latency 1.0] [--in-flight 10 50]
        [--p-duplicate 0.1] [--p-429 0.2]

Starts the stub teacher in this process (latency L per reply, `p_duplicate` of the generated
instructions are copies of earlier ones, every 429 says Retry-After: 1 s) and runs the real pipeline
on a local Ray, `general` only, once per (in flight, 429 share) pair, back to back:

- tokens per committed row against the minimum: the tokens the committed rows cost themselves
  (their share of the generating call plus their answer call); target at most 1.10x;
- answer calls per committed row and the answers thrown away because the target was already met
  (`target_met` / `over_target`); instructions generated per committed row;
- steady rows/s (10% -> 90% of the target, from the manifest's commit times) with 429s against
  without, at the same concurrency; target at least 0.70.

Prints one JSON object; docs/benchmarks.md records the results and this command.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

SURPLUS = ("target_met", "over_target")

from bench_pipeline import steady_rate  # noqa: E402  (bench/ is on the path when run as a script)


def one_run(base_url: str, rows: int, in_flight: int, out: Path) -> dict[str, Any]:
    import yaml

    import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
    from instructflow.cluster.accounting import Cost
    from instructflow.cluster.driver import run
    from instructflow.config import parse_config

    data = {
        "run": {"output_dir": str(out), "display": "off"},
        "teacher": {"base_url": base_url, "model": "stub", "api_key_env": None, "max_tokens": 512,
                    "limits": {"max_in_flight": in_flight}},
        "topics": {"file": None},
        "novelty": {"shards": 2, "torch_threads": 1},
        "writer": {"rows_per_part": 10, "flush_interval_s": 0.5, "keep_rejects": False},
        "categories": {"general": {"count": rows, "concurrency": in_flight}},
    }
    started = time.perf_counter()
    progress = run(parse_config(yaml.safe_dump(data)))
    wall = time.perf_counter() - started
    committed = sum(progress.committed.values())
    answers = sum(s.answers_started for stats in progress.producers.values() for s in stats)
    surplus = sum(n for (_, reason), n in progress.books.dropped.items() if reason in SURPLUS)
    cost = Cost.of(progress, committed)
    return {
        "in_flight": in_flight, "rows": committed, "wall_s": round(wall, 1),
        "steady_rows_per_s": round(steady_rate(out, rows), 3),
        "generated": sum(progress.generated.values()),
        "answer_calls": answers, "answers_per_row": round(answers / committed, 3),
        "surplus_dropped": surplus,
        "tokens_per_row": round(cost.per_row or 0, 1), "minimum_per_row": round(cost.minimum_per_row or 0, 1),
        "tokens_vs_minimum": round((cost.per_row or 0) / (cost.minimum_per_row or 1), 3),
        "wasted_share": round(cost.wasted_share or 0, 4),
        "rejects": dict(progress.rejects), "dropped": {f"{c}:{r}": n for (c, r), n in progress.books.dropped.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--p-duplicate", type=float, default=0.1)
    parser.add_argument("--p-429", type=float, default=0.2)
    args = parser.parse_args()

    from instructflow.instructors.teacher.stub import StubTeacher

    results = []
    with StubTeacher(seed=11, latency_s=args.latency, p_duplicate=args.p_duplicate, retry_after_s=1.0,
                     retry_after_format="seconds") as stub, tempfile.TemporaryDirectory() as tmp:
        for in_flight in args.in_flight:
            pair = {}
            for p_429 in (0.0, args.p_429):
                stub.set_faults(p_429=p_429)
                stub.reset_stats()
                out = Path(tmp) / f"c{in_flight}-p{p_429}"
                result = one_run(stub.base_url, args.rows, in_flight, out)
                result["p_429"] = p_429
                result["stub"] = {k: v for k, v in stub.stats().items() if k in ("requests", "by_status", "tokens")}
                pair[p_429] = result
                results.append(result)
                print(json.dumps(result), flush=True)
            ratio = pair[args.p_429]["steady_rows_per_s"] / max(pair[0.0]["steady_rows_per_s"], 1e-9)
            results.append({"in_flight": in_flight, "rows_per_s_with_429_vs_without": round(ratio, 3)})
            print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"rows": args.rows, "latency_s": args.latency, "p_duplicate": args.p_duplicate,
                      "p_429": args.p_429, "results": results}, indent=1))


if __name__ == "__main__":
    main()
