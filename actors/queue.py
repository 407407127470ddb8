"""The bounded queue actor that connects two stages (a thin shell around `core.queue.BatchQueue`)."""

from __future__ import annotations

from typing import Any

import ray

from instructflow.actors import metrics
from instructflow.actors.core.queue import BatchQueue, QueueStats


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class QueueActor:
    """Async actor: many producers and consumers wait inside it at once without blocking each other.

    A restarted queue comes back empty: items in it are lost, and the driver's accounting treats them
    as dropped so producers regenerate what is missing.
    """

    def __init__(self, name: str, maxsize: int) -> None:
        self.name = name
        self.label = name.replace(":", "_")
        self.queue = BatchQueue(maxsize, name)

    async def put_batch(self, items: list[Any], timeout: float | None = None) -> int:
        put = await self.queue.put_batch(items, timeout)
        metrics.set_gauge("queue_depth", len(self.queue), queue=self.label)
        return put

    async def get_batch(self, max_items: int, timeout: float | None = None) -> list[Any]:
        batch = await self.queue.get_batch(max_items, timeout)
        if batch:
            metrics.set_gauge("queue_depth", len(self.queue), queue=self.label)
        return batch

    async def take(self, max_items: int, timeout: float | None = None) -> tuple[list[Any], bool]:
        batch, ended = await self.queue.take(max_items, timeout)
        if batch:
            metrics.set_gauge("queue_depth", len(self.queue), queue=self.label)
        return batch, ended

    async def close(self, reason: str = "shutdown") -> None:
        await self.queue.close(reason)

    async def retire(self, reason: str) -> dict[str, int]:
        gone = await self.queue.retire(reason)
        metrics.set_gauge("queue_depth", 0, queue=self.label)
        return gone

    async def stats(self) -> QueueStats:
        return self.queue.stats()
