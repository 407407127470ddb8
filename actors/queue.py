"""The bounded queue actor that connects two stages (a thin shell around `core.queue.BatchQueue`)."""

from __future__ import annotations

from typing import Any

import ray

from instructflow.actors import metrics
from instructflow.actors.core.queue import BatchQueue


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class QueueActor:
    """Async actor: many producers and consumers wait inside it at once without blocking each other.

    A restarted queue comes back empty: items in it are lost, and the driver's accounting treats them
    as dropped so producers regenerate what is missing.
    """

    def __init__(self, name: str, maxsize: int) -> None:
        self.name = name
        self.label = name.replace(":", "_")
        self.queue = BatchQueue(maxsize)

    async def put_batch(self, items: list[Any], timeout: float | None = None) -> int:
        put = await self.queue.put_batch(items, timeout)
        metrics.set_gauge("queue_depth", len(self.queue), queue=self.label)
        return put

    async def get_batch(self, max_items: int, timeout: float | None = None) -> list[Any]:
        batch = await self.queue.get_batch(max_items, timeout)
        if batch:
            metrics.set_gauge("queue_depth", len(self.queue), queue=self.label)
        return batch

    async def close(self) -> None:
        await self.queue.close()

    async def stats(self) -> dict[str, Any]:
        return {"name": self.name, **self.queue.stats()}
