"""Yield of the embedded teacher (SmolLM2-135M) on `character` and `rp`, with and without grammars.

Runs the categories' own generate/respond calls against an in-process `LlamaEngine` (no Ray) and
counts the rows their parsers keep per call. Results in docs/benchmarks.md.

    .venv/bin/python bench/bench_grammar_yield.py --calls 6
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from types import SimpleNamespace
from typing import Any

from instructflow.instructors.categories.character import Character, CharacterParams
from instructflow.instructors.categories.rp import Rp, RpParams
from instructflow.instructors.rejection import CandidateRejected
from instructflow.instructors.teacher.api import Reply
from instructflow.instructors.teacher.embedded.llama import LlamaEngine


class EngineTeacher:
    """The `Teacher` protocol straight on the engine; `grammar` sent only when `use_grammar`."""

    def __init__(self, engine: LlamaEngine, use_grammar: bool) -> None:
        self.engine, self.use_grammar, self.calls = engine, use_grammar, 0

    async def chat(self, messages: list[dict[str, str]], *, category: str, call: str,
                   max_tokens: int | None = None, temperature: float | None = None,
                   grammar: str | None = None) -> Reply:
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens or 1024,
                                "temperature": 0.9 if temperature is None else temperature}
        if grammar and self.use_grammar:
            body["grammar"] = grammar
        self.calls += 1
        out = await self.engine.chat(body)
        choice, usage = out["choices"][0], out["usage"]
        return Reply(choice["message"]["content"] or "", usage["prompt_tokens"], usage["completion_tokens"],
                     out["model"], finish_reason=choice["finish_reason"])


async def _character(teacher: EngineTeacher, calls: int) -> int:
    inst = Character(CharacterParams(count=100, batch_size=2, max_tokens=1024), rng=random.Random(1))
    return sum([len(await inst.generate(teacher)) for _ in range(calls)])


async def _rp(teacher: EngineTeacher, calls: int) -> tuple[int, int]:
    inst = Rp(RpParams(count=100, batch_size=1, min_turns=2, max_turns=2, max_tokens=1024), rng=random.Random(1))
    scenes = rows = 0
    for _ in range(calls):
        for cand in await inst.generate(teacher):
            scenes += 1
            with contextlib.suppress(CandidateRejected):  # a transcript that breaks format: no row
                rows += await inst.respond(cand, teacher) is not None
    return scenes, rows


async def main(args: argparse.Namespace) -> None:
    settings = SimpleNamespace(model="smollm2-135m", host="127.0.0.1", port=0, parallel=1, context=4096, threads=1)
    engine = LlamaEngine(settings)
    try:
        for use in (False, True):
            teacher = EngineTeacher(engine, use)
            t0 = time.monotonic()
            cards = await _character(teacher, args.calls)
            t1 = time.monotonic()
            scenes, rows = await _rp(teacher, args.calls)
            t2 = time.monotonic()
            print(f"grammar={'on ' if use else 'off'} character: {cards} cards from {args.calls} calls "
                  f"({t1 - t0:.0f} s) | rp: {scenes} scenes from {args.calls} calls, {rows} transcripts kept "
                  f"({t2 - t1:.0f} s)", flush=True)
    finally:
        engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6, help="generating calls per category and mode")
    asyncio.run(main(parser.parse_args()))
