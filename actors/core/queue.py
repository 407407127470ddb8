"""A bounded, batch-oriented asyncio queue: the core of the queue actors between stages.

Ray's own `ray.util.queue.Queue` moves one item per actor call (a few hundred items/s); this one
moves batches, blocks producers while it is full (backpressure), and can be closed so consumers
drain what is left and then see the end.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any


class QueueClosed(Exception):
    """Raised by `put_batch` after `close()` or `retire()`; `reason` says why (the items a put
    could not deliver are dropped for that reason by the caller)."""

    def __init__(self, reason: str = "shutdown", delivered: int = 0) -> None:
        super().__init__(reason, delivered)
        self.reason = reason
        # Items of the refused put that did go in before the queue closed (a put waits for room
        # piece by piece): whoever holds the queue's contents now answers for those, the caller
        # only for the rest.
        self.delivered = delivered
        self.rest: list[Any] | None = None  # set by a caller that knows which candidates the rest are


class Deliveries:
    """Tells a candidate delivered twice from a new one, for a consumer of a queue actor.

    A put is at-least-once: when a queue actor dies after a put went in but before its reply got
    back, Ray runs the put again on the restarted queue, and a consumer that had already taken the
    first copy takes the candidates a second time. A copy is the same candidate object over again:
    the same row id and the same creation time. A teacher that writes the same instruction twice
    makes two candidates (two creation times): that is an exact duplicate for the novelty stage to
    reject, not a copy. The consumer passes copies over, so nothing is paid, decided or counted
    twice. Only the last `keep` candidates are remembered: a copy follows its original within
    seconds.
    """

    def __init__(self, keep: int = 50_000) -> None:
        self.keep = keep
        self._seen: dict[tuple[str, float], None] = {}
        self.copies = 0

    def fresh(self, cands: list[Any]) -> list[Any]:
        """`cands` without the ones taken before."""
        out = []
        for cand in cands:
            key = (cand.id, cand.created_at)
            if key in self._seen:
                self.copies += 1
                continue
            self._seen[key] = None
            if len(self._seen) > self.keep:
                del self._seen[next(iter(self._seen))]
            out.append(cand)
        return out


def _category(item: Any) -> str:
    first = item[0] if isinstance(item, tuple) and item else item
    return getattr(first, "category", "")


def _size(item: Any) -> int:
    return len(item) if isinstance(item, tuple) else 1


@dataclass
class QueueStats:
    """One queue's state, as the driver and the display read it."""

    name: str
    depth: int  # items (a group counts once)
    capacity: int
    put_total: int
    get_total: int
    blocked_put_s: float  # time producers spent waiting for room
    closed: bool
    by_category: dict[str, int] = field(default_factory=dict)  # candidates queued (group members each)


class BatchQueue:
    """FIFO of at most `maxsize` items. `put_batch` waits for room; `get_batch` waits for items.

    All methods must be called from one event loop (the actor's).
    """

    def __init__(self, maxsize: int, name: str = "") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self.maxsize = maxsize
        self._items: collections.deque[Any] = collections.deque()
        self._changed = asyncio.Condition()
        self._closed = False
        self.closed_reason = "shutdown"
        self.by_category: collections.Counter[str] = collections.Counter()  # candidates queued
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
                    raise QueueClosed(self.closed_reason, put)
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
                for item in chunk:
                    self.by_category[_category(item)] += _size(item)
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
            for item in batch:
                self.by_category[_category(item)] -= _size(item)
            self.get_total += count
            self._changed.notify_all()
            return batch

    async def take(self, max_items: int, timeout: float | None = None) -> tuple[list[Any], bool]:
        """`get_batch`, plus whether the stream has ended (closed and empty): a consumer needs no
        second round trip to tell a quiet queue from a finished one."""
        batch = await self.get_batch(max_items, timeout)
        return batch, not batch and self._closed and not self._items

    async def close(self, reason: str = "shutdown") -> None:
        """Refuses further puts (they raise `QueueClosed(reason)`); consumers still get what is
        queued, then []."""
        async with self._changed:
            if not self._closed:
                self.closed_reason = reason
            self._closed = True
            self._changed.notify_all()

    async def retire(self, reason: str) -> dict[str, int]:
        """Closes the queue for good and discards what it holds (nobody will consume it, e.g. the
        answer queue of a category whose target is met); later puts raise `QueueClosed(reason)`.
        Returns the discarded candidates per category, for the caller to record as dropped."""
        async with self._changed:
            self._closed = True
            self.closed_reason = reason
            gone: collections.Counter[str] = collections.Counter()
            while self._items:
                item = self._items.popleft()
                gone[_category(item)] += _size(item)
            self.by_category.clear()
            self._changed.notify_all()
            return dict(gone)

    def stats(self) -> QueueStats:
        return QueueStats(
            name=self.name,
            depth=len(self._items),
            capacity=self.maxsize,
            put_total=self.put_total,
            get_total=self.get_total,
            blocked_put_s=round(self.blocked_put_s, 3),
            closed=self._closed,
            by_category={k: v for k, v in self.by_category.items() if v > 0},
        )
