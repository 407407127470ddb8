"""The instructor loop, driven without Ray: plain BatchQueues and a scripted in-process teacher
(the unit under test is the quota and routing logic, not the HTTP client)."""

import asyncio
from pathlib import Path

from instructflow.actors.core.ledger import Accounts
from instructflow.actors.core.producer import Producer
from instructflow.actors.core.queue import BatchQueue, QueueClosed
from instructflow.instructors.registry import get_instructor
from instructflow.instructors.teacher.api import (
    BudgetExhausted,
    FatalTeacherError,
    Reply,
    RequestFailed,
)

PROMPTS = Path(__file__).resolve().parents[3] / "prompts"


class ScriptedTeacher:
    def __init__(self, fail_respond=0, raise_on_generate=None):
        self.calls = {"generate": 0, "respond": 0}
        self.fail_respond = fail_respond
        self.raise_on_generate = raise_on_generate

    async def chat(self, messages, *, category, call, max_tokens=None, temperature=None):
        self.calls[call] += 1
        await asyncio.sleep(0)
        if call == "generate":
            if self.raise_on_generate:
                raise self.raise_on_generate
            n = self.calls[call]
            items = "\n".join(f"{i}. Describe item number {n}-{i} of the catalogue in detail." for i in range(1, 6))
            return Reply(items, 50, 100, "m")
        if self.fail_respond:
            self.fail_respond -= 1
            raise RequestFailed("server_error", "503 after retries")
        return Reply("A detailed answer.", 20, 30, "m")


def make(teacher, quota, concurrency=2, answers_allowed=1000):
    general = get_instructor("general")
    instr = general(general.Params(count=10, batch_size=5), topics=["ships"])
    novelty, answers, judged = BatchQueue(1000), BatchQueue(1000), BatchQueue(1000)
    books = Accounts()

    async def report(delta):
        books.record(delta)

    producer = Producer(
        instr, teacher,
        emit_novelty=novelty.put_batch, take_answers=answers.take, emit_judge=judged.put_batch,
        report=report, concurrency=concurrency,
    )
    producer.books = books  # the run's books, as the ledger actor would keep them
    producer.steer(quota, answers_allowed)
    return producer, novelty, answers, judged


def test_generation_stops_at_its_cap_and_resumes_when_raised():
    async def main():
        teacher = ScriptedTeacher()
        producer, novelty, answers, judged = make(teacher, quota=12)
        task = asyncio.create_task(producer.run())
        for _ in range(200):
            await asyncio.sleep(0)
        first = teacher.calls["generate"]
        producer.steer(producer.generated_total + 5, 1000)  # caps are on the running total
        for _ in range(200):
            await asyncio.sleep(0)
        second = teacher.calls["generate"]
        producer.stop()
        await task
        return first, second, producer.books.total.generated["general"], len(novelty)

    first, second, generated, queued = asyncio.run(main())
    assert first == 3  # 12 candidates need ceil(12/5) calls; no more are started
    assert second == 4
    assert generated == queued == 20


def test_admitted_candidates_are_answered_and_forwarded():
    async def main():
        teacher = ScriptedTeacher(fail_respond=1)
        producer, novelty, answers, judged = make(teacher, quota=5)
        task = asyncio.create_task(producer.run())
        cands = await novelty.get_batch(5, 2)
        await answers.put_batch(cands)
        while len(judged) + sum(producer.books.total.dropped.values()) < 5:
            await asyncio.sleep(0.01)
        producer.stop()
        await task
        return producer, await judged.get_batch(10, 0)

    producer, out = asyncio.run(main())
    assert len(out) == 4 and all(c.response == "A detailed answer." for c in out)
    assert producer.books.total.dropped == {("general", "no_response"): 1}
    assert producer.failures["server_error"] == 1
    letters = producer.take_dead_letters()
    assert letters[0]["reason"] == "server_error" and letters[0]["call"] == "respond"
    assert out[0].prompt_tokens == 10 + 20  # share of the generating call plus the answer call
    # The instruction whose answer failed is handed back for the novelty gate to release, once.
    answered = {c.id for c in out}
    (unanswered,) = producer.take_unanswered()
    assert unanswered not in answered and producer.take_unanswered() == []


def test_budget_and_fatal_errors_end_the_loops_with_an_outcome():
    for error, outcome in [(BudgetExhausted("spent"), "budget"), (FatalTeacherError("401: check KEY"), "fatal: 401: check KEY")]:
        async def main(error=error):
            producer, *_ = make(ScriptedTeacher(raise_on_generate=error), quota=100)
            await asyncio.wait_for(producer.run(), 5)
            return producer.outcome

        assert asyncio.run(main()) == outcome


def test_drain_starts_no_new_teacher_calls_of_either_kind():
    async def main():
        teacher = ScriptedTeacher()
        producer, novelty, answers, judged = make(teacher, quota=100)
        general = producer.instructor
        await answers.put_batch([general.candidate(f"Explain topic number {i} in simple words.") for i in range(3)])
        producer.stop_generating()
        await asyncio.wait_for(producer.run(), 5)
        return teacher.calls, len(answers)

    calls, waiting = asyncio.run(main())
    assert calls == {"generate": 0, "respond": 0} and waiting == 3


def test_events_report_parse_failures_and_answers():
    events = []

    class Empty(ScriptedTeacher):
        async def chat(self, messages, *, category, call, max_tokens=None, temperature=None):
            reply = await super().chat(messages, category=category, call=call)
            return Reply("no list here", 1, 1, "m") if call == "generate" and self.calls[call] == 1 else reply

    async def main():
        producer, novelty, answers, judged = make(Empty(), quota=5, concurrency=1)
        producer.on_event = lambda *e: events.append(e)
        task = asyncio.create_task(producer.run())
        cands = await novelty.get_batch(1, 5)
        await answers.put_batch(cands)
        await judged.get_batch(1, 5)
        producer.stop()
        await task

    asyncio.run(main())
    assert ("reject", 1, "parse", "unparseable") in events and ("generated", 1, "generated", None) in events


def test_a_teacher_that_fails_every_request_trips_the_breaker():
    class Down(ScriptedTeacher):
        async def chat(self, messages, *, category, call, max_tokens=None, temperature=None):
            self.calls[call] += 1
            raise RequestFailed("connection", "Connection refused")

    async def main():
        teacher = Down()
        producer, *_ = make(teacher, quota=1000)
        producer.max_failures_in_a_row = 5
        await asyncio.wait_for(producer.run(), 5)
        return producer, teacher.calls["generate"]

    producer, calls = asyncio.run(main())
    assert producer.outcome.startswith("fatal: the teacher failed 5 requests in a row")
    assert "Connection refused" in producer.outcome and 5 <= calls <= 6


def test_one_taker_serves_the_answer_queue_in_batches():
    """64 slots must not mean 64 pollers: an idle answer queue is asked about twice a second, and
    a queue holding many candidates is emptied in a few takes, answered concurrently."""

    async def main():
        teacher = ScriptedTeacher()
        producer, novelty, answers, judged = make(teacher, quota=0, concurrency=64)
        takes = []

        async def counting_take(max_items, timeout):
            takes.append(max_items)
            return await answers.take(max_items, timeout)

        producer.take_answers = counting_take
        task = asyncio.create_task(producer.run())
        await asyncio.sleep(1.2)
        idle_takes = len(takes)
        general = get_instructor("general")(get_instructor("general").Params(count=1), topics=["x"])
        await answers.put_batch([general.candidate(f"Explain topic number {i} in depth.") for i in range(100)])
        for _ in range(500):
            if len(judged) >= 100:
                break
            await asyncio.sleep(0.01)
        busy_takes = len(takes) - idle_takes
        producer.stop_generating()
        await asyncio.wait_for(task, 5)
        return idle_takes, busy_takes, len(judged), takes

    idle_takes, busy_takes, answered, takes = asyncio.run(main())
    assert idle_takes <= 4, idle_takes
    assert answered == 100
    assert busy_takes <= 10 and max(takes) == 64, takes


def test_candidates_a_closed_queue_refuses_are_dropped_with_its_reason():
    """Generated candidates are in the books before they are emitted; a refused emit drops them."""

    async def main():
        producer, novelty, answers, judged = make(ScriptedTeacher(), quota=5, concurrency=1)
        await novelty.close("shutdown")
        task = asyncio.create_task(producer.run())
        for _ in range(500):
            if producer.books.total.dropped:
                break
            await asyncio.sleep(0.01)
        producer.stop()
        await asyncio.wait_for(task, 5)
        return producer.books.total

    books = asyncio.run(main())
    assert books.generated["general"] == 5
    assert books.dropped == {("general", "shutdown"): 5}


def test_a_retired_answer_queue_ends_the_answer_loop():
    async def main():
        producer, novelty, answers, judged = make(ScriptedTeacher(), quota=0)
        task = asyncio.create_task(producer._answer_loop())
        await answers.retire("target_met")
        await asyncio.wait_for(task, 5)
        return producer.stats()

    stats = asyncio.run(main())
    assert stats.held == 0 and stats.answering == 0
    assert QueueClosed("x").reason == "x"


def test_answer_calls_stop_at_the_answer_cap_and_resume_when_raised():
    async def main():
        teacher = ScriptedTeacher()
        producer, novelty, answers, judged = make(teacher, quota=0, answers_allowed=3)
        general = producer.instructor
        await answers.put_batch([general.candidate(f"Explain topic number {i} in plain words.") for i in range(8)])
        task = asyncio.create_task(producer.run())
        while len(judged) < 3:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        first = teacher.calls["respond"], len(answers), producer.stats().answers_allowed
        producer.steer(0, producer.answers_started + 2)  # the driver found two more are needed
        while len(judged) < 5:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        second = teacher.calls["respond"], len(answers)
        producer.stop()
        await task
        return first, second

    first, second = asyncio.run(main())
    assert first == (3, 5, 0)  # three answered, five wait in the queue unpaid
    assert second == (5, 3)


def test_stats_count_candidates_generated_and_not_yet_in_the_books():
    async def main():
        gate = asyncio.Event()
        teacher = ScriptedTeacher()
        general = get_instructor("general")
        instr = general(general.Params(count=10, batch_size=5), topics=["ships"])
        novelty, answers, judged = BatchQueue(1000), BatchQueue(1000), BatchQueue(1000)

        async def slow_report(delta):
            await gate.wait()

        producer = Producer(instr, teacher, emit_novelty=novelty.put_batch, take_answers=answers.take,
                            emit_judge=judged.put_batch, report=slow_report, concurrency=1)
        producer.steer(5, 0)
        task = asyncio.create_task(producer.run())
        while producer.generated_total < 5:
            await asyncio.sleep(0.01)
        during = producer.stats()
        gate.set()
        while len(novelty) < 5:
            await asyncio.sleep(0.01)
        after = producer.stats()
        producer.stop()
        await task
        return during, after

    during, after = asyncio.run(main())
    assert (during.generated_total, during.unreported, during.quota) == (5, 5, 0)
    assert (after.generated_total, after.unreported) == (5, 0)
