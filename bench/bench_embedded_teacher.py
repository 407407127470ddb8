"""Measures the embedded teacher on this machine: speed, memory, start-up and reply quality.

    .venv/bin/python bench/bench_embedded_teacher.py              # everything (~2-3 minutes)
    .venv/bin/python bench/bench_embedded_teacher.py --no-serve   # engine only, no Ray

Speed: tokens/s of one request alone and of two at once (llama.cpp's 2 slots), first in a plain
process, then through Ray Serve over HTTP with the openai SDK. Each is repeated `--repeats` times and
reported as a range, because the machine is shared. Quality: the prompts instructflow sends
(rendered from prompts/*.j2 by the real instructors), sampled at the default temperature, and
whether the replies parse with the same helpers the instructors use.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from instructflow.instructors.parsing import labeled_pairs, numbered_items
from instructflow.instructors.registry import get_instructor
from instructflow.instructors.render import load_template
from instructflow.instructors.teacher.llama import DEFAULT_MODEL, LlamaEngine

LONG_ASK = [{"role": "user", "content": "Tell a long story about a lighthouse keeper and a storm."}]
SPEED_BODY = {"messages": LONG_ASK, "max_tokens": 200, "ignore_eos": True, "temperature": 0.8}
TEMPERATURE = 0.9  # teacher.temperature's default


def _rss_mib(pid: str = "self") -> float:
    """Resident memory of a process from /proc (Linux; psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _settings() -> SimpleNamespace:
    return SimpleNamespace(model=DEFAULT_MODEL, host="127.0.0.1", port=8011, parallel=2, context=4096, threads=2)


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


def _prompts() -> list[tuple[str, str, Any]]:
    """(label, prompt, check) where check(reply) -> (parsed, expected)."""
    cases: list[tuple[str, str, Any]] = []
    for name, topic in [("general", "home cooking"), ("general", "personal finance"),
                        ("trivia", "the solar system"), ("trivia", "European history")]:
        cls = get_instructor(name)
        inst = cls(cls.Params(count=10, batch_size=5 if name == "general" else 3), topics=[topic])
        values = inst.choose()
        prompt = inst.template.render({**inst.common_values(), **values})
        if name == "general":
            cases.append((f"general/{topic}", prompt, lambda r: (len(numbered_items(r)), 5)))
        else:
            cases.append((f"trivia/{topic}", prompt, lambda r: (len(labeled_pairs(r, "QUESTION", "ANSWER")), 3)))
    judge = load_template("judge", frozenset({"category", "instruction", "response"}))
    cases.append(("judge", judge.render({"category": "general", "instruction": "Name the largest planet.",
                                         "response": "Jupiter is the largest planet in the Solar System.",
                                         "language": "English", "readability": "", "avoid_topics": ""}),
                  lambda r: (int(bool(re.search(r"^\s*SCORE:\s*\d+", r, re.M | re.I))), 1)))
    cases.append(("respond", "Give me a three-day plan for learning the basics of touch typing.",
                  lambda r: (int(len(r.split()) >= 20), 1)))
    return cases


async def _quality(engine: LlamaEngine, samples: int) -> None:
    print(f"\nquality (temperature {TEMPERATURE}, {samples} samples each; parsed/expected per sample)")
    for label, prompt, check in _prompts():
        results, example = [], ""
        for _ in range(samples):
            reply = await engine.chat({"messages": [{"role": "user", "content": prompt}],
                                       "temperature": TEMPERATURE, "max_tokens": 600})
            text = reply["choices"][0]["message"]["content"]
            results.append(check(text))
            example = example or text
        full = sum(1 for got, want in results if got >= want)
        some = sum(1 for got, _ in results if got > 0)
        counts = " ".join(f"{got}/{want}" for got, want in results)
        print(f"  {label:28s} full {full}/{samples}, any {some}/{samples}  [{counts}]")
        print("    e.g. " + example[:220].replace("\n", " | "))


def _engine_part(args: argparse.Namespace) -> None:
    rss0 = _rss_mib()
    start = time.perf_counter()
    engine = LlamaEngine(_settings())
    print(f"engine: load {time.perf_counter() - start:.1f} s, +{_rss_mib() - rss0:.0f} MiB RSS")
    try:
        for key, value in asyncio.run(_speed(engine.chat, args.repeats)).items():
            print(f"  in process, {key}: {value} tokens/s")
        asyncio.run(_quality(engine, args.samples))
    finally:
        engine.close()


def _serve_rss() -> dict[str, float]:
    """RSS of Serve's processes, found by the titles Ray gives its workers."""
    groups: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            for tag in ("ServeReplica", "ServeController", "ProxyActor"):
                if title.startswith(f"ray::{tag}"):
                    groups[tag] = groups.get(tag, 0.0) + _rss_mib(proc.name)
        except OSError:  # processes come and go while we look
            continue
    return groups


def _serve_part(args: argparse.Namespace) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import openai
    import ray

    from instructflow.actors.teacher_serve import start_embedded_teacher, stop_embedded_teacher

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        url = start_embedded_teacher(_settings())
        print(f"\nserve: ready in {time.perf_counter() - start:.1f} s at {url}")
        print("  RSS MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(_serve_rss().items())))
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)

        async def send(body: dict[str, Any]) -> dict[str, Any]:
            extra = {k: v for k, v in body.items() if k not in ("messages", "max_tokens", "temperature")}
            reply = await client.chat.completions.create(
                model=DEFAULT_MODEL, messages=body["messages"], max_tokens=body["max_tokens"],
                temperature=body["temperature"], extra_body=extra)
            return reply.model_dump()

        for key, value in asyncio.run(_speed(send, args.repeats)).items():
            print(f"  over HTTP, {key}: {value} tokens/s")
        stop_embedded_teacher()
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="speed runs per measurement")
    parser.add_argument("--samples", type=int, default=3, help="replies per quality prompt")
    parser.add_argument("--no-serve", action="store_true", help="skip the Ray Serve part")
    args = parser.parse_args()
    _engine_part(args)
    if not args.no_serve:
        _serve_part(args)


if __name__ == "__main__":
    main()
