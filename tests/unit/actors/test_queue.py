import asyncio

import pytest

from instructflow.actors.core.queue import BatchQueue, QueueClosed


def run(coro):
    return asyncio.run(coro)


def test_batches_keep_fifo_order():
    async def main():
        q = BatchQueue(10)
        await q.put_batch([1, 2, 3])
        await q.put_batch([4])
        return await q.get_batch(3, 0), await q.get_batch(10, 0)

    assert run(main()) == ([1, 2, 3], [4])


def test_put_blocks_when_full_until_a_consumer_makes_room():
    async def main():
        q = BatchQueue(2)
        await q.put_batch([1, 2])
        blocked = asyncio.create_task(q.put_batch([3, 4]))
        await asyncio.sleep(0)  # let the producer reach its wait
        assert not blocked.done() and len(q) == 2
        assert await q.get_batch(1, 0) == [1]
        got = [*await q.get_batch(5, 1), *await q.get_batch(5, 1)]
        assert await blocked == 2
        return got + await q.get_batch(5, 1)

    assert run(main()) == [2, 3, 4]


def test_put_with_timeout_returns_partial_count():
    async def main():
        q = BatchQueue(3)
        return await q.put_batch([1, 2, 3, 4, 5], timeout=0.05), len(q)

    assert run(main()) == (3, 3)


def test_get_times_out_empty():
    async def main():
        return await BatchQueue(1).get_batch(5, 0.01)

    assert run(main()) == []


def test_close_drains_then_ends_and_refuses_puts():
    async def main():
        q = BatchQueue(5)
        await q.put_batch(["a", "b"])
        await q.close()
        with pytest.raises(QueueClosed):
            await q.put_batch(["c"])
        return await q.get_batch(10, None), await q.get_batch(10, None)

    assert run(main()) == (["a", "b"], [])


def test_close_wakes_blocked_producer():
    async def main():
        q = BatchQueue(1)
        await q.put_batch([1])
        blocked = asyncio.create_task(q.put_batch([2]))
        await asyncio.sleep(0)
        await q.close()
        with pytest.raises(QueueClosed):
            await blocked

    run(main())


def test_rejects_zero_capacity():
    with pytest.raises(ValueError):
        BatchQueue(0)


def test_a_put_waiting_for_room_when_the_queue_retires_says_how_much_went_in():
    async def main():
        q = BatchQueue(2)
        blocked = asyncio.create_task(q.put_batch([1, 2, 3, 4, 5]))
        await asyncio.sleep(0)
        gone = await q.retire("target_met")
        with pytest.raises(QueueClosed) as info:
            await blocked
        return gone, info.value

    gone, exc = run(main())
    assert gone == {"": 2}  # the retire discarded (and answers for) the two that went in
    assert exc.reason == "target_met" and exc.delivered == 2


def test_a_coalesced_send_to_a_closed_queue_tells_each_caller_its_own_share():
    from instructflow.actors.core.coalesce import Coalescer

    async def main():
        q = BatchQueue(3)
        send = Coalescer(lambda items: q.put_batch(items))
        first = asyncio.create_task(send.submit([1, 2]))
        second = asyncio.create_task(send.submit([3, 4]))
        third = asyncio.create_task(send.submit([5]))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await q.close("shutdown")
        results = await asyncio.gather(first, second, third, return_exceptions=True)
        return results

    first, second, third = run(main())
    # The three were combined into one send of [1..5]; three went in before the close.
    assert isinstance(first, QueueClosed) and first.delivered == 2  # all of its own
    assert isinstance(second, QueueClosed) and second.delivered == 1
    assert isinstance(third, QueueClosed) and third.delivered == 0
