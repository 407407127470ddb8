"""Fewer round trips between actors: many concurrent small sends become one batched send.

A producer with 64 teacher calls in flight would otherwise make one actor call per finished call
(a queue put, a limiter release). Each actor call costs about a millisecond of CPU on each side,
which on a small machine is taken from the encoder. `Coalescer` keeps at most one send in flight
and gathers whatever is submitted meanwhile into the next one, so under load the batches grow by
themselves and with a single caller nothing waits longer than before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from instructflow.actors.core.queue import QueueClosed

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Batches concurrent `submit` calls into calls of `send(items)`, one at a time.

    Each submitter waits until the send that carried its items has returned, and gets that send's
    exception if it failed: blocking (backpressure) and errors reach every caller as if it had sent
    alone. Order is kept: items go out in the order they were submitted.

    Args:
        send: the batched call, e.g. `lambda items: queue.put_batch.remote(items)`.
        max_items: a send carries at most this many items (a single larger submission still goes
            whole); None for no limit.
    """

    def __init__(self, send: Callable[[list[T]], Awaitable[Any]], max_items: int | None = None) -> None:
        self._send = send
        self._max_items = max_items
        self._pending: deque[tuple[list[T], asyncio.Future[None]]] = deque()
        self._pump: asyncio.Task[None] | None = None
        self.sends = 0  # batched calls made
        self.submits = 0  # submissions they carried

    async def submit(self, items: list[T]) -> None:
        """Sends `items` (together with other callers' items); returns when they were sent."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((list(items), done))
        self.submits += 1
        if self._pump is None or self._pump.done():
            self._pump = loop.create_task(self._run())
        await done

    def _take(self) -> tuple[list[T], list[tuple[asyncio.Future[None], int]]]:
        items: list[T] = []
        waiters: list[tuple[asyncio.Future[None], int]] = []  # (future, how many items it sent)
        while self._pending:
            next_items, done = self._pending[0]
            if waiters and self._max_items is not None and len(items) + len(next_items) > self._max_items:
                break
            self._pending.popleft()
            items.extend(next_items)
            waiters.append((done, len(next_items)))
        return items, waiters

    async def _run(self) -> None:
        waiters: list[tuple[asyncio.Future[None], int]] = []
        try:
            while self._pending:
                items, waiters = self._take()
                self.sends += 1
                try:
                    await self._send(items)
                except Exception as exc:  # noqa: BLE001 - handed to every caller whose items it carried
                    _settle(waiters, exc)
                else:
                    _settle(waiters, None)
                waiters = []
        except asyncio.CancelledError:
            # The event loop is closing: nobody's items can be promised any more.
            for done in [d for d, _ in waiters] + [done for _, done in self._pending]:
                done.cancel()
            self._pending.clear()
            raise


def _settle(waiters: list[tuple[asyncio.Future[None], int]], exc: BaseException | None) -> None:
    start = 0
    for done, count in waiters:
        share = exc
        if isinstance(exc, QueueClosed):
            # A closed queue took the first `delivered` items of the combined send: tell each
            # caller how many of its own went in.
            share = QueueClosed(exc.reason, min(count, max(0, exc.delivered - start)))
        start += count
        if done.done():
            continue  # its caller was cancelled; the items went anyway, as a plain call's would
        if share is None:
            done.set_result(None)
        else:
            done.set_exception(share)
