"""Measures the embedded teacher on this machine: speed, memory, start-up and reply quality.

    .venv/bin/python bench/bench_embedded_teacher.py                # everything (~4 minutes idle)
    .venv/bin/python bench/bench_embedded_teacher.py --no-serve     # engine only, no Ray
    .venv/bin/python bench/bench_embedded_teacher.py --samples 0 --threads 2   # speed of one setting

Speed: tokens/s of one request alone and of two at once (llama.cpp's 2 slots), first in a plain
process, then through Ray Serve over HTTP with the openai SDK. Each is repeated `--repeats` times and
reported as a range with the load average, because the machine is shared and two llama threads on
two busy cores slow down far more than one. Quality: the prompts instructflow sends
(rendered from prompts/*.j2 by the real instructors), sampled at the default temperature, and
whether the replies parse with the same helpers the instructors use.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from instructflow.instructors.parsing import labeled_pairs, numbered_items
from instructflow.instructors.registry import get_instructor
from instructflow.instructors.render import load_template
from instructflow.instructors.teacher.embedded.llama import DEFAULT_MODEL, LlamaEngine

APP_NAME = "instructflow-teacher"  # actors.teacher_serve.APP_NAME, without importing Ray up front

LONG_ASK = [{"role": "user", "content": "Tell a long story about a lighthouse keeper and a storm."}]
SPEED_BODY = {"messages": LONG_ASK, "max_tokens": 200, "ignore_eos": True, "temperature": 0.8}


def _rss_mib(pid: str = "self") -> float:
    """Resident memory of a process from /proc (Linux; psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    # Not 8011: a quickstart running on this machine would be found there and measured instead.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _settings(threads: int, port: int = 0) -> SimpleNamespace:
    return SimpleNamespace(model=DEFAULT_MODEL, host="127.0.0.1", port=port, parallel=2, context=4096, threads=threads)


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def _span(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f} (median {statistics.median(values):.0f})"


async def _speed(send: Any, repeats: int) -> dict[str, str]:
    """tokens/s for one request alone and the aggregate of two at once; `send(body)` -> reply dict."""
    alone, decode, pair = [], [], []
    await send({**SPEED_BODY, "max_tokens": 8})  # warm-up
    for _ in range(repeats):
        start = time.perf_counter()
        reply = await send(SPEED_BODY)
        alone.append(reply["usage"]["completion_tokens"] / (time.perf_counter() - start))
        decode.append(reply.get("timings", {}).get("predicted_per_second", 0.0))
        start = time.perf_counter()
        both = await asyncio.gather(send(SPEED_BODY), send(SPEED_BODY))
        pair.append(sum(r["usage"]["completion_tokens"] for r in both) / (time.perf_counter() - start))
    return {"1 request, end to end": _span(alone), "1 request, decode only": _span(decode), "2 at once, aggregate": _span(pair)}


def _instructor_case(name: str, topic: str, batch: int) -> tuple[str, str, Any]:
    """The generating prompt of a real instructor, and a check counting what its parser keeps."""
    cls = get_instructor(name)
    inst = cls(cls.Params(count=10, batch_size=batch), topics=[topic])
    values = inst.choose()
    prompt = inst.template.render({**inst.common_values(), **values})

    def check(reply: str) -> tuple[int, int, int]:
        found = numbered_items(reply) if name == "general" else labeled_pairs(reply, "QUESTION", "ANSWER")
        return len(found), len(inst.parse(reply, values)), batch

    return f"{name}/{topic}", prompt, check


def _prompts() -> list[tuple[str, str, Any]]:
    """(label, prompt, check): check(reply) -> (parsed by the helper, kept by the instructor, asked)."""
    cases = [_instructor_case("general", "home cooking", 5), _instructor_case("general", "personal finance", 5),
             _instructor_case("trivia", "the solar system", 3), _instructor_case("trivia", "European history", 3)]
    judge = load_template("judge", frozenset({"category", "instruction", "response"}))
    prompt = judge.render({"category": "general", "instruction": "Name the largest planet.",
                           "response": "Jupiter is the largest planet in the Solar System.",
                           "language": "English", "readability": "", "avoid_topics": ""})
    score = re.compile(r"^\s*SCORE:\s*\d+", re.M | re.I)
    cases.append(("judge (SCORE: line)", prompt, lambda r: (int(bool(score.search(r))),) * 2 + (1,)))
    cases.append(("respond (>= 20 words)", "Give me a three-day plan for learning the basics of touch typing.",
                  lambda r: (int(len(r.split()) >= 20),) * 2 + (1,)))
    return cases


async def _quality(engine: LlamaEngine, args: argparse.Namespace) -> None:
    print(f"\nquality: temperature {args.temperature}, max_tokens {args.max_tokens}, {args.samples} replies "
          "per prompt; per reply: parsed by the helper / kept by the instructor / asked for")
    for label, prompt, check in _prompts():
        results, example = [], ""
        for _ in range(args.samples):
            reply = await engine.chat({"messages": [{"role": "user", "content": prompt}],
                                       "temperature": args.temperature, "max_tokens": args.max_tokens})
            text = reply["choices"][0]["message"]["content"]
            results.append(check(text))
            example = example or text
        full = sum(1 for _, kept, asked in results if kept >= asked)
        some = sum(1 for _, kept, _ in results if kept > 0)
        counts = " ".join(f"{got}/{kept}/{asked}" for got, kept, asked in results)
        print(f"  {label:28s} all kept {full}/{args.samples}, some kept {some}/{args.samples}  [{counts}]")
        print("    e.g. " + example[:200].replace("\n", " | "))


def _engine_part(args: argparse.Namespace) -> None:
    for threads in args.threads:
        rss0, start = _rss_mib(), time.perf_counter()
        engine = LlamaEngine(_settings(threads))
        print(f"engine, {threads} thread(s): load {time.perf_counter() - start:.1f} s, "
              f"+{_rss_mib() - rss0:.0f} MiB RSS ({_load()})")
        try:
            for key, value in asyncio.run(_speed(engine.chat, args.repeats)).items():
                print(f"  in process, {key}: {value} tokens/s")
            if args.samples and threads == args.threads[0]:
                asyncio.run(_quality(engine, args))
        finally:
            engine.close()


def _serve_rss() -> dict[str, float]:
    """RSS of Serve's processes, found by the titles Ray gives its workers (another cluster's Serve
    controller or proxy on this machine would be counted too; replicas are told apart by app name)."""
    groups: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            for tag in (f"ServeReplica:{APP_NAME}", "ServeController", "ProxyActor"):
                if title.startswith(f"ray::{tag}"):
                    groups[tag] = groups.get(tag, 0.0) + _rss_mib(proc.name)
        except OSError:  # processes come and go while we look
            continue
    return groups


def _serve_part(args: argparse.Namespace) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from instructflow.actors.teacher_serve import start_embedded_teacher, stop_embedded_teacher

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for threads in args.threads:
            start = time.perf_counter()
            url = start_embedded_teacher(_settings(threads, _free_port()))
            print(f"\nserve, {threads} thread(s): ready in {time.perf_counter() - start:.1f} s at {url} ({_load()})")
            print("  RSS MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(_serve_rss().items())))
            for key, value in asyncio.run(_speed(_http_sender(url), args.repeats)).items():
                print(f"  over HTTP, {key}: {value} tokens/s")
            stop_embedded_teacher()
    finally:
        ray.shutdown()


def _http_sender(url: str) -> Any:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)

    async def send(body: dict[str, Any]) -> dict[str, Any]:
        extra = {k: v for k, v in body.items() if k not in ("messages", "max_tokens", "temperature")}
        reply = await client.chat.completions.create(
            model=DEFAULT_MODEL, messages=body["messages"], max_tokens=body["max_tokens"],
            temperature=body["temperature"], extra_body=extra)
        return reply.model_dump()

    return send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="speed runs per measurement")
    parser.add_argument("--samples", type=int, default=3, help="replies per quality prompt (0: none)")
    parser.add_argument("--temperature", type=float, default=0.8, help="as in config/quickstart.yaml")
    parser.add_argument("--max-tokens", type=int, default=320, help="as in config/quickstart.yaml")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="llama threads to compare")
    parser.add_argument("--no-serve", action="store_true", help="skip the Ray Serve part")
    args = parser.parse_args()
    _engine_part(args)
    if not args.no_serve:
        _serve_part(args)


if __name__ == "__main__":
    main()
