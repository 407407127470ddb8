"""The writer actor: a thin Ray shell around `core.writer.PartWriter`.

One writer per run. It pulls accepted rows from the writer queue (`pump`), takes rejects and dead
letters from the other stages, and flushes on a timer. If it dies, Ray restarts it and retries the
call that was running (`pump` included): the new instance reopens the output, which recovers from
the manifest, so committed rows survive and rows it held in memory are regenerated upstream (the
driver sees `accepted` drop back to the committed counts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
import ray

from instructflow.actors import metrics
from instructflow.actors.core.manifest import PartEntry
from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate

log = logging.getLogger(__name__)

_QUEUE_RETRY_S = 0.5  # wait before asking a restarting queue actor again


def _report_commit(entry: PartEntry, seconds: float) -> None:
    metrics.observe("commit_latency_seconds", seconds)
    metrics.set_gauge("last_commit_timestamp_seconds", time.time())
    for category, rows in entry.categories.items():
        metrics.inc("rows_committed", rows, category=category)
        metrics.inc("candidates", rows, category=category, stage="written")


@ray.remote(num_cpus=0.1, max_restarts=-1, max_task_retries=-1, max_concurrency=8)
class WriterActor:
    """Async actor around `PartWriter`; its calls run one at a time on the actor's event loop.

    Args:
        root: output root (local path or filesystem URI).
        **options: `PartWriter` keyword arguments (targets, rows_per_part, flush_interval_s, run_id,
            exports, keep_rejects).
    """

    def __init__(self, root: str, **options: Any) -> None:
        self.core = PartWriter(root, on_commit=_report_commit, **options)
        self.held = 0  # rows taken from the queue and not yet handed to the core
        self.error: str | None = None  # the last failure of the timed flush
        self._ticker: asyncio.Task[None] | None = None
        self.closed = False

    def _ensure_ticker(self) -> None:
        """Starts the periodic flush on the actor's event loop (not running yet in __init__)."""
        if not self.closed and (self._ticker is None or self._ticker.done()):
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        period = max(0.05, self.core.flush_interval_s / 2)
        while True:
            await asyncio.sleep(period)  # a timer, not synchronisation
            try:
                self.core.maybe_flush()
                self.error = None
            except Exception as exc:  # kept for stats; the next add/flush raises it to the caller
                if str(exc) != self.error:  # once per distinct failure, not every tick of a full disk
                    log.error("timed flush failed: %s", exc)
                self.error = str(exc)

    async def add(self, candidates: list[Candidate]) -> dict[str, int]:
        """Accepts rows (see `PartWriter.add`)."""
        self._ensure_ticker()
        return self.core.add(candidates)

    async def pump(self, queue: Any, batch_size: int = 256, timeout_s: float = 0.5) -> dict[str, int]:
        """Moves rows from the writer queue into the core until the queue is closed and empty,
        then flushes. Returns the committed counts per category."""
        self._ensure_ticker()
        while True:
            try:
                batch = await queue.get_batch.remote(batch_size, timeout_s)
                if not batch and (await queue.stats.remote())["closed"]:
                    break
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                log.warning("writer queue unavailable (%s); retrying", type(exc).__name__)
                await asyncio.sleep(_QUEUE_RETRY_S)
                continue
            self.held = len(batch)
            try:
                if batch:
                    self._count_skips(batch, self.core.add(batch))
                else:
                    self.core.maybe_flush()
            finally:
                self.held = 0
        self.core.flush()
        return self.core.counts()

    @staticmethod
    def _count_skips(batch: list[Candidate], outcome: dict[str, int]) -> None:
        # `add` reports skips by reason only; one batch is nearly always one category's surplus.
        if sum(n for reason, n in outcome.items() if reason != "accepted"):
            category = batch[-1].category
            for reason, n in outcome.items():
                if reason != "accepted" and n:
                    metrics.inc("rejects", n, category=category, stage="write", reason=reason)

    async def reject(self, items: list[tuple[Candidate, str]]) -> None:
        """Counts (and, when enabled, logs) rejected candidates: ``[(candidate, reason), ...]``."""
        for candidate, reason in items:
            self.core.reject(candidate, reason)

    async def dead_letter(self, letters: list[dict[str, Any]]) -> None:
        """Logs requests that failed for good (dicts with at least ``reason``)."""
        for letter in letters:
            self.core.dead_letter(letter)

    async def counts(self) -> dict[str, int]:
        """Committed rows per category."""
        return self.core.counts()

    async def done(self) -> bool:
        """True when every category reached its target."""
        return self.core.done()

    async def stats(self) -> dict[str, Any]:
        """`PartWriter.stats` plus ``held`` and the last timed-flush ``error``."""
        self._ensure_ticker()
        return {**self.core.stats(), "held": self.held, "error": self.error}

    async def flush(self) -> int:
        """Commits every pending row now; returns the rows committed."""
        return self.core.flush()

    async def committed_vectors(self) -> tuple[list[str], np.ndarray]:
        """Ids and stored embeddings of every committed row (to seed the novelty index)."""
        return self.core.committed_vectors()

    async def close(self) -> list[str]:
        """Flushes and writes the whole-file exports; returns their locations."""
        self.closed = True
        if self._ticker is not None:
            self._ticker.cancel()
        return self.core.close()
