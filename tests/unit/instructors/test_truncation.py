"""Replies cut at max_tokens (finish_reason "length"): answer, list and judge calls against the real
stub teacher (no Ray), and every category's list parsing on its recorded reply cut at many points."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from instructflow.actors.core.judge import JudgeChain
from instructflow.actors.core.ledger import Accounts
from instructflow.actors.core.producer import Producer
from instructflow.actors.core.queue import BatchQueue
from instructflow.actors.core.writer import PartWriter
from instructflow.config import LlmJudge, Rules, TeacherConfig
from instructflow.instructors import registry
from instructflow.instructors.base import Instructor
from instructflow.instructors.derived import feed_recorded
from instructflow.instructors.record import Candidate
from instructflow.instructors.teacher.api import Reply
from instructflow.instructors.teacher.client import TeacherClient
from instructflow.instructors.teacher.stub import StubTeacher
from instructflow.instructors.truncation import ReplyTruncated, join_continuation
from instructflow.prompts import PROMPTS_DIR

T = TypeVar("T")
SENTENCE_END = re.compile(r"[.!?]\s*$")


@pytest.fixture
def stub() -> Iterator[StubTeacher]:
    with StubTeacher(seed=3) as server:
        yield server


def with_client(stub: StubTeacher, max_tokens: int, work: Callable[[TeacherClient], Awaitable[T]]) -> T:
    """Runs `work(client)` with a client of the stub whose requests ask for `max_tokens`."""
    config = TeacherConfig(base_url=stub.base_url, model="stub-model", api_key_env=None, max_tokens=max_tokens)

    async def go() -> T:
        client = TeacherClient(config, base_url=stub.base_url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def make(category: str, **params: Any) -> Instructor:
    cls = registry.get_instructor(category)
    return feed_recorded(cls(cls.Params(count=1, **params), topics=["lighthouses"], rng=random.Random(0)))


def key(cand: Candidate) -> tuple[str, str | None]:
    return cand.instruction, cand.response


# -- the stub and the client ----------------------------------------------------------------------
def test_stub_cuts_at_max_tokens_and_the_client_reports_length(stub: StubTeacher) -> None:
    async def work(client: TeacherClient) -> tuple[Reply, Reply, Reply, int]:
        ask = [{"role": "user", "content": "Tell me about tides."}]
        cut = await client.chat(ask, category="general", call="respond", max_tokens=20)
        whole = await client.chat(ask, category="general", call="respond", max_tokens=1000)
        plain = await client.complete("Once upon a time", category="general", call="respond", max_tokens=20)
        return cut, whole, plain, client.stats().truncated

    cut, whole, plain, counted = with_client(stub, 1000, work)
    # A paragraph of two or more sentences is longer than 20 tokens: cut, on both endpoints.
    assert cut.truncated and cut.finish_reason == "length" and 0 < cut.completion_tokens <= 20
    assert plain.truncated and plain.completion_tokens <= 20
    assert whole.finish_reason == "stop" and not whole.truncated and SENTENCE_END.search(whole.text)
    assert counted == 2
    assert stub.stats()["completion_tokens"] == cut.completion_tokens + whole.completion_tokens + plain.completion_tokens


def test_p_length_runs_past_the_cap_only_for_the_named_calls(stub: StubTeacher) -> None:
    stub.set_faults(p_length=1.0, length_calls=["judge"])

    async def work(client: TeacherClient) -> list[Reply]:
        ask = [{"role": "user", "content": "Judge this."}]
        return [await client.chat(ask, category="general", call=call) for call in ("respond", "judge")]

    respond, judge = with_client(stub, 1000, work)
    assert respond.finish_reason == "stop"
    assert judge.truncated and 990 < judge.completion_tokens <= 1000  # cut right at the cap
    assert judge.text.startswith("SCORE:")  # the recorded judge reply, run on past the cap
    assert stub.stats()["faults_injected"] == {"p_length": 1}


# -- answer calls ---------------------------------------------------------------------------------
def answer_run(stub: StubTeacher, max_tokens: int, **params: Any) -> tuple[Accounts, list[Candidate], list, Producer]:
    """Generates 5 general tasks through a Producer, admits them all, and waits until each is either
    passed to the judges or rejected; returns the books, the answered candidates, the rejects log
    and the producer."""
    rejects: list[tuple[Candidate, str]] = []

    async def work(client: TeacherClient) -> tuple[Accounts, list[Candidate], Producer]:
        novelty, answers, judged = BatchQueue(100), BatchQueue(100), BatchQueue(100)
        books = Accounts()

        async def report(delta: Any) -> None:
            books.record(delta)

        producer = Producer(
            make("general", batch_size=5, **params), client, emit_novelty=novelty.put_batch,
            take_answers=answers.take, emit_judge=judged.put_batch, report=report, concurrency=2,
            log_rejects=rejects.extend,
        )
        producer.steer(5, 5)
        task = asyncio.create_task(producer.run())
        await answers.put_batch(await novelty.get_batch(5, 5))
        async with asyncio.timeout(20):
            while len(judged) + sum(books.snapshot().rejected.values()) < 5:
                await asyncio.sleep(0.01)
        producer.stop()
        await task
        return books, await judged.get_batch(10, 0), producer

    books, answered, producer = with_client(stub, max_tokens, work)
    return books, answered, rejects, producer


def test_an_answer_cut_at_max_tokens_is_rejected_as_truncated(stub: StubTeacher, tmp_path) -> None:
    stub.set_faults(p_length=1.0, length_calls=["respond"])  # the list fits in 400 tokens; answers run on
    books, answered, rejects, producer = answer_run(stub, 400)

    assert answered == []
    assert books.snapshot().rejected == {("general", "instructor:truncated"): 5}
    assert [reason for _, reason in rejects] == ["truncated"] * 5
    assert producer.failures == {}  # a verdict on the row, not a failed request
    # The rejects log keeps the cut answer, so a reader sees what the tokens bought.
    writer = PartWriter(str(tmp_path))
    for cand, reason in rejects:
        writer.reject(cand, reason)
    writer.close()
    records = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert len(records) == 5 and {r["reason"] for r in records} == {"truncated"}
    assert all(r["response"] and not SENTENCE_END.search(r["response"]) for r in records)
    # Each rejected candidate carries its answer call's tokens: 400 at most, and all were billed.
    assert all(300 < c.completion_tokens <= 400 + 100 for c, _ in rejects)


def test_an_answer_is_continued_when_the_category_opts_in(stub: StubTeacher) -> None:
    stub.set_faults(p_length=1.0, length_calls=["respond"])  # continuations ("continue") end whole
    books, answered, rejects, _ = answer_run(stub, 400, max_continuations=2)

    assert rejects == [] and len(answered) == 5
    assert all(SENTENCE_END.search(c.response) for c in answered)
    assert all(len(c.response.split()) > 300 for c in answered)  # the cut answer is kept, then continued
    served = stub.stats()
    assert served["requests"] == 1 + 5 + 5  # one list, five answers, five continuations
    # Every call's tokens are on the rows (the generating call's are split over its five rows).
    assert sum(c.completion_tokens for c in answered) == pytest.approx(served["completion_tokens"], abs=5)
    assert sum(c.prompt_tokens for c in answered) == pytest.approx(served["prompt_tokens"], abs=5)


def test_an_answer_that_stays_cut_through_its_continuations_is_rejected(stub: StubTeacher) -> None:
    stub.set_faults(p_length=1.0, length_calls=["respond", "continue"])

    async def work(client: TeacherClient) -> tuple[Candidate, ReplyTruncated]:
        cand = make("general").candidate("Describe the history of lighthouses in detail.")
        with pytest.raises(ReplyTruncated) as caught:
            await make("general", max_continuations=1).respond(cand, client)
        return cand, caught.value

    cand, error = with_client(stub, 60, work)
    assert error.calls == 2 and "after 1 continuation" in str(error)
    assert cand.response is None and cand.completion_tokens == stub.stats()["completion_tokens"]


# -- list calls -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("category", "max_tokens"), [("general", 70), ("trivia", 80), ("riddle", 90), ("roleplay", 140)])
def test_a_list_cut_at_max_tokens_drops_its_partial_last_item(stub: StubTeacher, category: str, max_tokens: int) -> None:
    instr = make(category, batch_size=3)
    values = instr.choose()
    prompt = instr.template.render({**instr.common_values(), **values})

    async def ask(client: TeacherClient) -> Reply:
        return await instr.ask(client, prompt, "generate")

    whole = [key(c) for c in make(category).parse(with_client(stub, 4000, ask).text, values)]
    stub.reset_stats()  # the same request number: the same content, now run on past the cap
    stub.set_faults(p_length=1.0, length_calls=["generate"])
    reply = with_client(stub, max_tokens, ask)
    assert reply.truncated
    naive = [key(c) for c in make(category).parse(reply.text, values)]
    kept = [key(c) for c in instr.parse_reply(reply, values)]
    assert kept == naive[:-1] and kept, "the items before the cut are kept, the one it went through is not"
    assert set(kept) <= set(whole) and naive[-1] not in whole  # that one was indeed partial


@pytest.mark.parametrize("category", registry.categories())
def test_every_category_keeps_only_whole_items_wherever_its_list_is_cut(category: str) -> None:
    """The recorded generating reply cut after every third word: what is kept is always the first
    items of the whole reply's, and at most the one item the cut went through is lost."""
    base = make(category)
    text = (PROMPTS_DIR / f"{category}.example.txt").read_text(encoding="utf-8")
    values = base.choose()
    whole = [key(c) for c in base.fork().parse(text, values)]
    lost_one = False
    for end in [m.end() for m in re.finditer(r"\S+", text)][::3]:
        instr = base.fork()
        kept = [key(c) for c in instr.parse_reply(Reply(text[:end], 1, 1, "m", finish_reason="length"), values)]
        naive = [key(c) for c in base.fork().parse(text[:end], values)]
        assert kept == whole[: len(kept)], f"cut after {text[:end][-40:]!r} kept a partial item"
        assert len(naive) - len(kept) <= 1, f"cut after {text[:end][-40:]!r} lost a whole item"
        lost_one = lost_one or len(naive) > len(kept)
    if len(whole) > 1 and category not in ("multiple_choice", "contextual"):  # those never read a partial item
        assert lost_one, "no cut ever produced a partial item: the test cuts nowhere useful"


def test_a_trial_read_leaves_the_instructor_as_one_parse_would() -> None:
    """Parsers may draw from the rng or deal answer positions (multiple_choice); the second read of a
    cut reply must not change what later calls get."""
    text = (PROMPTS_DIR / "multiple_choice.example.txt").read_text(encoding="utf-8")
    one, two = make("multiple_choice"), make("multiple_choice")
    values = one.choose()
    two.choose()
    cut = Reply(text[: len(text) - 30], 1, 1, "m", finish_reason="length")
    one.parse_reply(cut, values)
    two.parse(cut.text, values)
    assert one.rng.getstate() == two.rng.getstate() and one._decks == two._decks
    assert [key(c) for c in one.parse(text, values)] == [key(c) for c in two.parse(text, values)]


# -- judge calls ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("max_tokens", "accepted", "reason", "calls"),
    # The recorded judge reply ("SCORE: 8 ...") is about 38 stub tokens long.
    [(64, True, None, 1), (24, True, None, 2), (16, False, "judge_truncated", 2)],
)
def test_a_cut_judge_reply_is_asked_again_with_twice_the_room_then_rejected(
    stub: StubTeacher, max_tokens: int, accepted: bool, reason: str | None, calls: int
) -> None:
    chain = JudgeChain(Rules(), LlmJudge(enabled=True, max_tokens=max_tokens))
    cand = Candidate(category="general", instruction="Explain how tides work.", response="The moon pulls the sea.")

    async def work(client: TeacherClient) -> Any:
        return await chain.judge(cand, client)

    verdict = with_client(stub, 1000, work)
    assert (verdict.accepted, verdict.reason) == (accepted, reason)
    served = stub.stats()
    assert served["requests"] == calls and cand.completion_tokens == served["completion_tokens"]
    # A score sits before every cut here; it is used only from a whole reply.
    assert cand.score == (8.0 if accepted else None)


# -- joining a continuation -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "tail", "joined"),
    [
        ("The tide comes in twice", "a day.", "The tide comes in twice a day."),
        ("The tide comes in twice ", "a day.", "The tide comes in twice a day."),
        ("The tide comes in twice", ", roughly.", "The tide comes in twice, roughly."),
        ("Steps:\n1. Wait", "\n2. Sail.", "Steps:\n1. Wait\n2. Sail."),
        ("The tide comes in twice a day", "comes in twice a day, pulled by the moon.",
         "The tide comes in twice a day, pulled by the moon."),
    ],
)
def test_join_continuation(head: str, tail: str, joined: str) -> None:
    assert join_continuation(head, tail) == joined
