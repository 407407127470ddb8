"""The stage kernel (`core.stage`) driven with plain `BatchQueue`s: no Ray."""

import asyncio

import pytest

from instructflow.actors.core.ledger import SHUTDOWN, TARGET_MET, Accounts
from instructflow.actors.core.queue import BatchQueue
from instructflow.actors.core.stage import Outcome, Stage, StageBug, StageLoop
from instructflow.instructors.record import Candidate


def cands(category, n, start=0):
    return [Candidate(category, f"{category} instruction {i}", response="r") for i in range(start, start + n)]


class Router(Stage):
    """Rejects instructions ending in 0, sends the rest to `answer:<category>`."""

    name = "router"
    batch_size = 4

    def __init__(self, concurrency=1, gate=None):
        self.concurrency = concurrency
        self.gate = gate
        self.active = 0
        self.most_active = 0
        self.ticks = 0
        self.finished = False

    async def process(self, batch):
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        if self.gate is not None:
            await self.gate.wait()
        self.active -= 1
        out = Outcome()
        for c in batch:
            if c.instruction.endswith("0"):
                out.rejected.append((c, "ends_in_zero"))
            else:
                out.send(f"answer:{c.category}", c)
        return out

    async def tick(self):
        self.ticks += 1

    async def finish(self):
        self.finished = True


def wire(stage, queues, books, rejects=None, idle_timeout=0.05):
    async def put(edge, items):
        await queues[edge].put_batch(items)

    async def report(delta):
        books.record(delta)

    return StageLoop(
        stage, take=queues["in"].take, put=put, report=report, idle_timeout=idle_timeout,
        on_rejects=rejects.extend if rejects is not None else None,
    )


def test_copies_of_a_retried_put_are_passed_over_but_a_teachers_repeat_is_not():
    """A queue actor that died after a put went in gets the put again from Ray: the consumer sees
    the same candidates twice (as pickled copies). Each is processed and counted once; a candidate
    with the same instruction made anew (a teacher repeating itself) is still processed."""
    import copy

    async def main():
        queues = {"in": BatchQueue(100), "answer:a": BatchQueue(100)}
        books = Accounts()
        stage = Router()
        first = cands("a", 3, start=1)
        await queues["in"].put_batch(first)
        await queues["in"].put_batch(copy.deepcopy(first))  # the retried put, after a restart
        await queues["in"].put_batch(cands("a", 1, start=1))  # the same text, a new candidate
        await queues["in"].close()
        loop = wire(stage, queues, books)
        await loop.run()
        return queues, books, loop

    queues, books, loop = asyncio.run(main())
    assert books.snapshot().passed == {("router", "a"): 4}
    assert len(queues["answer:a"]) == 4 and loop.deliveries.copies == 3


def test_every_candidate_is_passed_on_or_rejected_and_recorded_once():
    async def main():
        queues = {"in": BatchQueue(100), "answer:a": BatchQueue(100), "answer:b": BatchQueue(100)}
        books, rejects = Accounts(), []
        stage = Router()
        await queues["in"].put_batch(cands("a", 11) + cands("b", 5))
        await queues["in"].close()
        await wire(stage, queues, books, rejects).run()
        return queues, books, rejects, stage

    queues, books, rejects, stage = asyncio.run(main())
    total = books.snapshot()
    assert total.rejected == {("a", "router:ends_in_zero"): 2, ("b", "router:ends_in_zero"): 1}
    assert total.passed == {("router", "a"): 9, ("router", "b"): 4}
    assert len(queues["answer:a"]) == 9 and len(queues["answer:b"]) == 4
    assert sorted(c.instruction for c, _ in rejects) == ["a instruction 0", "a instruction 10", "b instruction 0"]
    assert stage.finished


def test_a_closed_edge_drops_with_its_reason_instead_of_blocking():
    """The stall of issue 11: a finished category's full answer queue blocked the novelty stage and,
    behind it, every other category. A retired edge now drops what is meant for it."""

    async def main():
        queues = {"in": BatchQueue(100), "answer:a": BatchQueue(1), "answer:b": BatchQueue(100)}
        books = Accounts()
        await queues["answer:a"].put_batch(cands("a", 1, start=100))  # full, and nobody will take it
        assert await queues["answer:a"].retire(TARGET_MET) == {"a": 1}
        await queues["in"].put_batch(cands("a", 9, start=1) + cands("b", 3, start=1))
        await queues["in"].close()
        await asyncio.wait_for(wire(Router(), queues, books).run(), 5)
        return books.snapshot(), queues

    total, queues = asyncio.run(main())
    assert total.dropped == {("a", TARGET_MET): 9}
    assert len(queues["answer:b"]) == 3


def test_takes_the_next_batch_only_while_one_is_in_process_up_to_concurrency():
    async def main():
        gate = asyncio.Event()
        queues = {"in": BatchQueue(100), "answer:a": BatchQueue(100)}
        stage = Router(concurrency=2, gate=gate)
        loop = wire(stage, queues, Accounts())
        await queues["in"].put_batch(cands("a", 12, start=1))
        task = asyncio.create_task(loop.run())
        for _ in range(50):
            await asyncio.sleep(0)
        held_while_blocked = sum(loop.held.values())
        gate.set()
        await queues["in"].close()
        await asyncio.wait_for(task, 5)
        return stage, held_while_blocked, loop

    stage, held, loop = asyncio.run(main())
    assert stage.most_active == 2
    assert held == 8  # two batches of 4 in process, the third still queued
    assert sum(loop.held.values()) == 0 and loop.batches == 3


def test_a_quiet_input_ticks_and_a_closed_one_ends_the_loop():
    async def main():
        queues = {"in": BatchQueue(10)}
        stage = Router()
        task = asyncio.create_task(wire(stage, queues, Accounts(), idle_timeout=0.01).run())
        while stage.ticks < 3:
            await asyncio.sleep(0.01)
        await queues["in"].close(SHUTDOWN)
        await asyncio.wait_for(task, 5)
        return stage

    assert asyncio.run(main()).finished


def test_an_outcome_that_loses_a_candidate_is_a_bug():
    class Leaky(Stage):
        name = "leaky"

        async def process(self, batch):
            return Outcome(accepted=batch[1:])

    async def main():
        queues = {"in": BatchQueue(10)}
        await queues["in"].put_batch(cands("a", 2))
        await queues["in"].close()
        await wire(Leaky(), queues, Accounts()).run()

    with pytest.raises(StageBug):
        asyncio.run(main())


def test_a_fatal_stage_ends_its_loop_without_finishing():
    class Fatal(Router):
        async def process(self, batch):
            self.fatal = "the teacher rejected the API key"
            return Outcome(rejected=[(c, "teacher_fatal") for c in batch])

    async def main():
        queues = {"in": BatchQueue(100)}
        await queues["in"].put_batch(cands("a", 20))
        stage = Fatal()
        books = Accounts()
        await asyncio.wait_for(wire(stage, queues, books).run(), 5)
        return stage, books, queues

    stage, books, queues = asyncio.run(main())
    assert not stage.finished and len(queues["in"]) == 16
    assert books.snapshot().rejected == {("a", "router:teacher_fatal"): 4}


def test_queue_counts_candidates_per_category_and_group_members_each():
    async def main():
        q = BatchQueue(10, "novelty")
        a, b, c = cands("a", 3)
        await q.put_batch([(a, b), c, cands("b", 1)[0]])
        first = q.stats().by_category
        await q.get_batch(1, 0)
        return first, q.stats()

    first, stats = asyncio.run(main())
    assert first == {"a": 3, "b": 1}
    assert stats.by_category == {"a": 1, "b": 1} and stats.depth == 2 and stats.name == "novelty"


def test_the_books_keep_each_reporters_newest_total_and_survive_a_ledger_restart():
    from instructflow.actors.core.ledger import Ledger, Reporter

    def delta(n):
        d = Ledger()
        d.generate(cands("a", n))
        return d

    one, two = Reporter("instructor:a:0/x"), Reporter("novelty:0/y")
    books = Accounts()
    first, second = one.add(delta(3)), one.add(delta(2))
    books.submit(second)
    books.submit(first)  # late and older: ignored, never counted twice
    books.submit(two.add(delta(4)))
    assert books.snapshot().generated["a"] == 9
    saved = dict(books.reports)  # the driver's copy at its last snapshot
    restarted = Accounts()
    restarted.submit(two.add(delta(1)))  # a live reporter sends its whole total: 5
    restarted.restore(saved)  # the driver restores what the ledger lost, keeping newer totals
    assert restarted.snapshot().generated["a"] == 5 + 5
