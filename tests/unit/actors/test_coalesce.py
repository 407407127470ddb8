"""Coalescer: concurrent submissions share sends, in order, and every caller sees its send's fate."""

from __future__ import annotations

import asyncio

import pytest

from instructflow.actors.core.coalesce import Coalescer


class SlowSink:
    """A send that takes a while, as an actor call does, and can be told to fail."""

    def __init__(self, delay_s: float = 0.01, fail_on: int | None = None) -> None:
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.batches: list[list[int]] = []

    async def send(self, items: list[int]) -> None:
        await asyncio.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"queue closed while sending {self.fail_on}")
        self.batches.append(items)


def test_concurrent_submissions_go_out_in_few_sends_in_order() -> None:
    sink = SlowSink()

    async def go() -> Coalescer[int]:
        coalescer: Coalescer[int] = Coalescer(sink.send)
        await asyncio.gather(*[coalescer.submit([i, i + 1000]) for i in range(50)])
        return coalescer

    coalescer = asyncio.run(go())
    flat = [x for batch in sink.batches for x in batch]
    assert flat == [x for i in range(50) for x in (i, i + 1000)]
    assert coalescer.submits == 50 and coalescer.sends == len(sink.batches) <= 3


def test_a_lone_caller_is_sent_at_once() -> None:
    sink = SlowSink(delay_s=0)

    async def go() -> None:
        coalescer: Coalescer[int] = Coalescer(sink.send)
        for i in range(3):
            await coalescer.submit([i])
            assert sink.batches[-1] == [i]  # returned only after its own send

    asyncio.run(go())
    assert sink.batches == [[0], [1], [2]]


def test_max_items_caps_a_send_but_never_splits_a_submission() -> None:
    sink = SlowSink()

    async def go() -> None:
        coalescer: Coalescer[int] = Coalescer(sink.send, max_items=4)
        await asyncio.gather(coalescer.submit([0]), *[coalescer.submit([i, i, i]) for i in range(1, 6)],
                             coalescer.submit(list(range(10, 20))))

    asyncio.run(go())
    big = list(range(10, 20))
    assert all(len(b) <= 4 or b == big for b in sink.batches), sink.batches
    assert [x for b in sink.batches for x in b] == [0, *[i for i in range(1, 6) for _ in range(3)], *big]


def test_a_failed_send_fails_exactly_the_callers_it_carried() -> None:
    sink = SlowSink(fail_on=7)

    async def go() -> list[object]:
        coalescer: Coalescer[int] = Coalescer(sink.send)
        first = asyncio.create_task(coalescer.submit([1]))  # goes alone, while the rest gather
        await asyncio.sleep(0)
        rest = [asyncio.create_task(coalescer.submit([i])) for i in (5, 6, 7, 8)]
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        await coalescer.submit([9])  # the coalescer still works after a failure
        return results

    results = asyncio.run(go())
    assert results[0] is None
    assert all(isinstance(r, RuntimeError) and "sending 7" in str(r) for r in results[1:])
    assert sink.batches == [[1], [9]]


def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    sink = SlowSink(delay_s=0.05)

    async def go() -> None:
        coalescer: Coalescer[int] = Coalescer(sink.send)
        first = asyncio.create_task(coalescer.submit([1]))
        await asyncio.sleep(0.01)
        quitter = asyncio.create_task(coalescer.submit([2]))
        stayer = asyncio.create_task(coalescer.submit([3]))
        await asyncio.sleep(0.01)
        quitter.cancel()
        await first
        await stayer
        with pytest.raises(asyncio.CancelledError):
            await quitter

    asyncio.run(go())
    assert sink.batches == [[1], [2, 3]]  # like a plain actor call, a submitted item still goes
