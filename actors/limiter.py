"""`TeacherGate`: the one rate limiter and budget shared by every actor that calls the same teacher.

A thin async actor around `instructors.teacher.limits.RateLimiter`, one per (base_url, model),
found by name. `RemoteLimiter` gives actors the same `acquire`/`release` interface as the local
limiter, so `TeacherClient` does not know which one it has. It batches: the acquires and releases
of one process's concurrent requests travel in shared round trips (`acquire_many`, `release_many`),
because one actor call per request and direction cost ~3 ms of CPU per teacher call, taken from
the encoder on a small machine. Admission is still decided per request, by the gate.

Ownership matters: a named actor dies with the process that created it. Call `teacher_gate` in the
driver before starting the actors that use it; they then fetch the driver's gate by name. The gate's
state (window, spent budget) lives in memory: if it restarts, feed it what was already spent with
`add_spent` before trusting the budget again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import Any

import ray

from instructflow.actors import metrics
from instructflow.actors.core.coalesce import Coalescer
from instructflow.instructors.teacher.api import BudgetExhausted
from instructflow.instructors.teacher.limits import OUTCOMES, RateLimiter

NAMESPACE = "instructflow"


# Restarts are retried transparently (max_task_retries); the restarted gate starts with an open
# window and nothing spent, and counts releases it never admitted as `unmatched_releases`.
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)
class TeacherGate:
    """Cluster-wide admission control for one teacher endpoint (see `RateLimiter`)."""

    def __init__(self, limits: Any, budget: Any, model: str = "") -> None:
        self.core = RateLimiter(limits, budget)
        self.model = model
        self.budget = budget

    def _export(self) -> None:
        snap = self.core.snapshot()
        metrics.set_gauge("requests_in_flight", snap["in_flight"], model=self.model)
        metrics.set_gauge("ratelimit_concurrency", snap["allowed_in_flight"], model=self.model)
        metrics.set_gauge("cost_spent_usd", snap["cost_spent_usd"], model=self.model)
        if snap.get("budget_tokens_left") is not None:
            metrics.set_gauge("budget_remaining_tokens", snap["budget_tokens_left"])
        if snap.get("budget_usd_left") is not None:
            metrics.set_gauge("budget_remaining_usd", snap["budget_usd_left"])

    async def acquire(self, est_tokens: int) -> None:
        try:
            await self.core.acquire(est_tokens)
        finally:
            self._export()

    async def acquire_many(self, est_tokens: list[int]) -> int:
        """Admits the first request (waiting as `acquire` does), then as many of the following as
        may start at once, in order; returns how many were admitted (at least 1)."""
        try:
            await self.core.acquire(est_tokens[0])
            admitted = 1
            while admitted < len(est_tokens) and self.core.try_acquire(est_tokens[admitted]):
                admitted += 1
            return admitted
        finally:
            self._export()

    async def release(self, **outcome: Any) -> None:
        await self.core.release(**outcome)
        self._export()

    async def release_many(self, outcomes: list[dict[str, Any]]) -> None:
        for outcome in outcomes:
            await self.core.release(**outcome)
        self._export()

    async def add_spent(
        self, prompt_tokens: int = 0, completion_tokens: int = 0, model: str = "", price_factor: float = 1.0
    ) -> None:
        self.core.add_spent(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, model=model, price_factor=price_factor
        )

    async def snapshot(self) -> dict[str, Any]:
        return self.core.snapshot()


def gate_name(base_url: str, model: str, scope: str = "") -> str:
    """The actor name of the gate for (base_url, model) within `scope` (the run id: a budget
    belongs to one run)."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\x1f{model}\x1f{scope}".encode()).hexdigest()[:16]
    return f"teacher-gate-{digest}"


def teacher_gate(
    base_url: str, model: str, limits: Any, budget: Any, namespace: str = NAMESPACE, scope: str = ""
) -> Any:
    """The gate for (base_url, model, scope): created on first call, fetched by name afterwards.

    `limits` and `budget` only take effect when this call creates the gate.
    """
    return TeacherGate.options(
        name=gate_name(base_url, model, scope), namespace=namespace, get_if_exists=True
    ).remote(limits, budget, model)


class RemoteLimiter:
    """The `acquire`/`release` interface of `RateLimiter`, served by a `TeacherGate` actor.

    Acquires wait in a local FIFO; one `acquire_many` round trip at a time carries every waiter
    (up to `max_batch`), and the gate admits a prefix of them. Releases go through a `Coalescer`
    into `release_many`. Each call still returns only once the gate has acted on it.
    """

    def __init__(self, handle: Any, max_batch: int = 256) -> None:
        self.handle = handle
        self.max_batch = max_batch
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._asking: list[tuple[int, asyncio.Future[None]]] = []  # the batch the gate is deciding
        self._asking_ref: Any = None
        self._releases: Coalescer[dict[str, Any]] = Coalescer(self._send_releases)
        self._cleanups: set[asyncio.Task[None]] = set()  # keeps slot-returning tasks alive
        self.round_trips = 0

    async def acquire(self, est_tokens: int) -> None:
        """Waits for the gate's admission. Raises `BudgetExhausted` when the budget is spent."""
        loop = asyncio.get_running_loop()
        admitted: asyncio.Future[None] = loop.create_future()
        self._waiting.append((int(est_tokens), admitted))
        if self._pump is None or self._pump.done():
            self._pump = loop.create_task(self._ask())
        try:
            await admitted
        except asyncio.CancelledError:
            if admitted.done() and not admitted.cancelled() and admitted.exception() is None:
                self._give_back()  # admitted just as our caller gave up
            elif self._asking_ref is not None and all(fut.cancelled() for _, fut in self._asking):
                ray.cancel(self._asking_ref)  # nobody wants this round any more: stop the gate's wait
            raise

    async def _ask(self) -> None:
        while self._waiting:
            batch: list[tuple[int, asyncio.Future[None]]] = []
            while self._waiting and len(batch) < self.max_batch:
                est, fut = self._waiting.popleft()
                if not fut.cancelled():
                    batch.append((est, fut))
            if not batch:
                continue
            self.round_trips += 1
            self._asking = batch
            self._asking_ref = self.handle.acquire_many.remote([est for est, _ in batch])
            try:
                admitted = await self._asking_ref
            except ray.exceptions.TaskCancelledError:
                admitted = 0  # every waiter of this round gave up, and the gate stopped waiting
            except asyncio.CancelledError:  # the event loop is closing
                for _, fut in batch + list(self._waiting):
                    fut.cancel()
                self._waiting.clear()
                raise
            except ray.exceptions.RayTaskError as exc:
                error = BudgetExhausted(str(exc.cause)) if isinstance(exc.cause, BudgetExhausted) else exc
                _fail(batch, error)
                continue
            except Exception as exc:  # noqa: BLE001 - the gate is gone for good: every waiter learns why
                _fail(batch, exc)
                continue
            finally:
                self._asking, self._asking_ref = [], None
            for _, fut in batch[:admitted]:
                if fut.cancelled():
                    self._give_back()
                else:
                    fut.set_result(None)
            self._waiting.extendleft(reversed([w for w in batch[admitted:] if not w[1].cancelled()]))

    def _give_back(self) -> None:
        task = asyncio.get_running_loop().create_task(
            self.release(outcome="cancelled", model="", prompt_tokens=0, completion_tokens=0)
        )
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _send_releases(self, outcomes: list[dict[str, Any]]) -> None:
        self.round_trips += 1
        await self.handle.release_many.remote(outcomes)

    async def release(
        self,
        *,
        outcome: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        retry_after_s: float | None = None,
        price_factor: float = 1.0,
    ) -> None:
        if outcome not in OUTCOMES:  # checked here: one bad outcome must not fail a shared batch
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
        extra = {"price_factor": price_factor} if price_factor != 1.0 else {}  # batch lines cost less
        await self._releases.submit([{
            "outcome": outcome, "model": model, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "retry_after_s": retry_after_s, **extra,
        }])

    async def snapshot(self) -> dict[str, Any]:
        """The gate's `RateLimiter.snapshot()` (a coroutine here, unlike the local limiter)."""
        return await self.handle.snapshot.remote()


def _fail(batch: list[tuple[int, asyncio.Future[None]]], error: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(error)
