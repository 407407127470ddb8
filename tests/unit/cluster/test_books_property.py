"""Property: whatever the order of events and wherever replicas die, every generated candidate is
counted exactly once as accepted, rejected, dropped or lost, and the driver's numbers add up.

Real `StageLoop`s, `BatchQueue`s and `Accounts`, no Ray: a replica's death is its loop task being
cancelled while it holds a batch it has not recorded yet (the whole batch is lost, and the books
must say exactly that many), or while it is idle (nothing is lost).
"""

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from instructflow.actors.core.ledger import SHUTDOWN, TARGET_MET, Accounts, Ledger
from instructflow.actors.core.queue import BatchQueue, QueueClosed
from instructflow.actors.core.stage import Outcome, Stage, StageLoop
from instructflow.cluster.accounting import Progress, settle_lost
from instructflow.instructors.record import Candidate

CATS = ("a", "b")
kills_hit: list[bool] = []  # whether a run lost anything: the property must see both cases


class Filter(Stage):
    """Rejects about a third, passes the rest on to `out:<category>`."""

    name = "filter"
    batch_size = 5

    def __init__(self, rng, hold):
        self.rng = rng
        self.hold = hold  # an event the test keeps clear to catch a replica mid-batch

    async def process(self, batch):
        await self.hold.wait()
        out = Outcome()
        for c in batch:
            if self.rng.random() < 0.33:
                out.rejected.append((c, "bad"))
            else:
                out.send(f"out:{c.category}", c)
        return out


class Sink(Stage):
    """Accepts up to `room` rows per category, drops the rest as over target."""

    name = "sink"
    batch_size = 7

    def __init__(self, room):
        self.room = dict(room)

    async def process(self, batch):
        out = Outcome()
        for c in batch:
            if self.room[c.category] > 0:
                self.room[c.category] -= 1
                out.accepted.append(c)
            else:
                out.dropped.append((c, "over_target"))
        return out


events = st.lists(
    st.tuples(
        st.sampled_from(["generate", "kill_in_process", "kill_idle", "retire", "step"]),
        st.sampled_from(CATS),
        st.integers(1, 12),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(events=events, seed=st.integers(0, 10_000))
def test_books_balance_under_random_events_and_kills(events, seed):
    lost_truth = asyncio.run(_run(events, seed))
    books, progress = lost_truth["books"], lost_truth["progress"]
    for cat in CATS:
        assert books.generated[cat] == (
            books.terminal(cat) + progress.lost[cat]
        ), f"{cat}: generated {books.generated[cat]} != terminal {books.terminal(cat)} + lost {progress.lost[cat]}"
        assert progress.lost[cat] == lost_truth["lost"][cat]
        assert progress.in_flight(cat) == 0


def test_the_property_saw_runs_with_and_without_losses():
    test_books_balance_under_random_events_and_kills()
    assert any(kills_hit) and not all(kills_hit)


async def _run(events, seed):
    rng = random.Random(seed)
    books = Accounts()
    queues = {"in": BatchQueue(1000), **{f"out:{c}": BatchQueue(1000) for c in CATS}, "sink": BatchQueue(1000)}
    hold = asyncio.Event()
    hold.set()
    lost = {c: 0 for c in CATS}
    made = 0

    async def report(delta):
        books.record(delta)

    async def put(edge, items):
        await queues[edge].put_batch(items)

    def filter_loop():
        loop = StageLoop(Filter(rng, hold), take=queues["in"].take, put=put, report=report, idle_timeout=0.01)
        return loop, asyncio.create_task(loop.run())

    loop, task = filter_loop()
    for kind, cat, n in events:
        if kind == "generate":
            cands = [Candidate(cat, f"{cat} {made + i}") for i in range(n)]
            made += n
            delta = Ledger()
            delta.generate(cands)
            books.record(delta)  # recorded before it is emitted, as the producer does
            try:
                await queues["in"].put_batch(cands)
            except QueueClosed as exc:
                drop = Ledger()
                drop.drop(cands, exc.reason)
                books.record(drop)
        elif kind == "retire":
            gone = await queues[f"out:{cat}"].retire(TARGET_MET)
            drop = Ledger()
            drop.dropped.update({(c, TARGET_MET): k for c, k in gone.items()})
            books.record(drop)
        elif kind in ("kill_in_process", "kill_idle"):
            if kind == "kill_in_process":
                hold.clear()  # the replica takes a batch and waits inside `process`
            await _settle()
            for c in CATS:  # what it holds has not been recorded: all of it is lost
                lost[c] += loop.held[c]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            hold.set()
            loop, task = filter_loop()  # Ray restarts the replica
        elif kind == "step":
            await _settle()
    # Drain in graph order: the input closes, the filter ends, the outputs feed the sink, which ends.
    hold.set()
    await queues["in"].close(SHUTDOWN)
    sink = Sink({c: rng.randint(0, 20) for c in CATS})
    relay_tasks = [asyncio.create_task(_relay(queues[f"out:{c}"], queues["sink"])) for c in CATS]
    await asyncio.wait_for(task, 10)
    for c in CATS:
        await queues[f"out:{c}"].close(SHUTDOWN)
    await asyncio.gather(*relay_tasks)
    await queues["sink"].close(SHUTDOWN)
    sink_loop = StageLoop(sink, take=queues["sink"].take, put=put, report=report, idle_timeout=0.01)
    await asyncio.wait_for(sink_loop.run(), 10)

    progress = Progress(targets=dict.fromkeys(CATS, 1), books=books.snapshot())
    settle_lost(progress)
    assert sum(len(q) for q in queues.values()) == 0
    kills_hit.append(sum(lost.values()) > 0)
    return {"books": progress.books, "progress": progress, "lost": lost}


async def _relay(src, dst):
    """The consumer of an `out:` edge (a stand-in for the answering instructor)."""
    while True:
        items, ended = await src.take(10, 0.01)
        if items:
            await dst.put_batch(items)
        elif ended:
            return


async def _settle():
    for _ in range(30):
        await asyncio.sleep(0)
