"""How much load the stub teacher sustains, and what it costs in CPU.

    .venv/bin/python bench/bench_stub.py --concurrency 64 --latency 1.0 --requests 640

Starts the stub as its own process (as benchmarks of the pipeline do), sends `--requests` chat
requests through `TeacherClient` with `--concurrency` in flight, and prints throughput, latency
percentiles, the CPU seconds the stub process used (from /proc; Linux only) and those of the client
(this process). These are the stub's speed figures; the unit tests only check that it serves
requests in parallel (its own concurrency counter), not how fast.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from instructflow.config import Limits, TeacherConfig
from instructflow.instructors.teacher.client import TeacherClient
from instructflow.instructors.teacher.limits import RateLimiter


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_stub(latency: float, extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "instructflow.instructors.teacher.stub", "--port", "0", "--latency", str(latency), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    match = re.search(r"listening on (\S+)", proc.stdout.readline())
    if not match:
        proc.kill()
        raise SystemExit("the stub did not start")
    return proc, match.group(1)


async def drive(base_url: str, concurrency: int, requests: int) -> list[float]:
    config = TeacherConfig(api_key_env=None, model="bench", timeout_s=60, max_attempts=8)
    client = TeacherClient(config, RateLimiter(Limits(max_in_flight=concurrency)), base_url=base_url)
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            reply = await client.chat([{"role": "user", "content": "hi"}], category="trivia", call="generate")
            latencies.append(reply.latency_s)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.aclose()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("stub_flags", nargs="*", help="extra stub flags after --, e.g. -- --p-429 0.1")
    args = parser.parse_args()
    proc, base_url = start_stub(args.latency, args.stub_flags)
    try:
        cpu0, client0, t0 = cpu_seconds(proc.pid), time.process_time(), time.monotonic()
        latencies = asyncio.run(drive(base_url, args.concurrency, args.requests))
        wall, cpu = time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0
        client = time.process_time() - client0
    finally:
        proc.terminate()
        proc.wait(10)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"{len(latencies)} requests, concurrency {args.concurrency}, stub latency {args.latency:g} s: "
        f"{len(latencies) / wall:.1f} requests/s, latency p50 {statistics.median(latencies):.3f} s "
        f"p99 {p99:.3f} s; stub CPU {cpu:.2f} s in {wall:.1f} s ({100 * cpu / wall:.1f}% of one core), "
        f"client CPU {client:.2f} s"
    )


if __name__ == "__main__":
    main()
