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
