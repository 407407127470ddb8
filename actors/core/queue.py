"""A bounded, batch-oriented asyncio queue: the core of the queue actors between stages.

Ray's own `ray.util.queue.Queue` moves one item per actor call (a few hundred items/s); this one
moves batches, blocks producers while it is full (backpressure), and can be closed so consumers
drain what is left and then see the end.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any


class QueueClosed(Exception):
    """Raised by `put_batch` after `close()`: the stage downstream is shutting down."""


class BatchQueue:
    """FIFO of at most `maxsize` items. `put_batch` waits for room; `get_batch` waits for items.

    All methods must be called from one event loop (the actor's).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._items: collections.deque[Any] = collections.deque()
        self._changed = asyncio.Condition()
        self._closed = False
        self.put_total = 0
        self.get_total = 0
        self.blocked_put_s = 0.0  # time producers spent waiting for room

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put_batch(self, items: list[Any], timeout: float | None = None) -> int:
        """Appends every item, waiting for room as needed (a batch larger than the queue goes in
        piece by piece). Returns the number put; fewer than `len(items)` only when `timeout` ends
        the wait. Raises `QueueClosed` once the queue is closed."""
        put = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self._changed:
            while put < len(items):
                if self._closed:
                    raise QueueClosed()
                room = self.maxsize - len(self._items)
                if room <= 0:
                    started = time.monotonic()
                    remaining = None if deadline is None else deadline - started
                    if remaining is not None and remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._changed.wait(), remaining)
                    except TimeoutError:
                        break
                    finally:
                        self.blocked_put_s += time.monotonic() - started
                    continue
                chunk = items[put : put + room]
                self._items.extend(chunk)
                put += len(chunk)
                self.put_total += len(chunk)
                self._changed.notify_all()
        return put

    async def get_batch(self, max_items: int, timeout: float | None = None) -> list[Any]:
        """Up to `max_items` items; waits up to `timeout` for the first one. Returns [] on timeout,
        and [] at once when the queue is closed and empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self._changed:
            while not self._items:
                if self._closed:
                    return []
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return []
            count = min(max_items, len(self._items))
            batch = [self._items.popleft() for _ in range(count)]
            self.get_total += count
            self._changed.notify_all()
            return batch

    async def close(self) -> None:
        """Refuses further puts; consumers still get what is queued, then []."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    def stats(self) -> dict[str, Any]:
        return {
            "depth": len(self._items),
            "capacity": self.maxsize,
            "put_total": self.put_total,
            "get_total": self.get_total,
            "blocked_put_s": round(self.blocked_put_s, 3),
            "closed": self._closed,
        }
