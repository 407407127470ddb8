"""`TeacherGate`: the one rate limiter and budget shared by every actor that calls the same teacher.

A thin async actor around `instructors.teacher.limits.RateLimiter`, one per (base_url, model),
found by name. `RemoteLimiter` gives actors the same `acquire`/`release` interface as the local
limiter, so `TeacherClient` does not know which one it has.

Ownership matters: a named actor dies with the process that created it. Call `teacher_gate` in the
driver before starting the actors that use it; they then fetch the driver's gate by name. The gate's
state (window, spent budget) lives in memory: if it restarts, feed it what was already spent with
`add_spent` before trusting the budget again.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import ray

from instructflow.actors import metrics
from instructflow.instructors.teacher.api import BudgetExhausted
from instructflow.instructors.teacher.limits import RateLimiter

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
        if snap.get("budget_tokens_left") is not None:
            metrics.set_gauge("budget_remaining_tokens", snap["budget_tokens_left"])
        if snap.get("budget_usd_left") is not None:
            metrics.set_gauge("budget_remaining_usd", snap["budget_usd_left"])

    async def acquire(self, est_tokens: int) -> None:
        try:
            await self.core.acquire(est_tokens)
        finally:
            self._export()

    async def release(self, **outcome: Any) -> None:
        await self.core.release(**outcome)
        self._export()

    async def add_spent(self, prompt_tokens: int = 0, completion_tokens: int = 0, model: str = "") -> None:
        self.core.add_spent(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, model=model)

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
    """The `acquire`/`release` interface of `RateLimiter`, served by a `TeacherGate` actor."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self._cleanups: set[asyncio.Task[None]] = set()  # keeps slot-returning tasks alive

    async def acquire(self, est_tokens: int) -> None:
        """Waits for the gate's admission. Raises `BudgetExhausted` when the budget is spent."""
        ref = self.handle.acquire.remote(est_tokens)
        try:
            await ref
        except asyncio.CancelledError:
            # The gate may admit us after we stopped waiting: cancel there, or hand the slot back.
            ray.cancel(ref)
            task = asyncio.get_running_loop().create_task(self._return_slot(ref))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)
            raise
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, BudgetExhausted):
                raise BudgetExhausted(str(exc.cause)) from None
            raise

    async def _return_slot(self, ref: Any) -> None:
        try:
            await ref
        except (ray.exceptions.TaskCancelledError, ray.exceptions.RayError, asyncio.CancelledError):
            return  # never admitted
        await self.release(outcome="cancelled", model="", prompt_tokens=0, completion_tokens=0)

    async def release(
        self,
        *,
        outcome: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        retry_after_s: float | None = None,
    ) -> None:
        await self.handle.release.remote(
            outcome=outcome,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            retry_after_s=retry_after_s,
        )

    async def snapshot(self) -> dict[str, Any]:
        """The gate's `RateLimiter.snapshot()` (a coroutine here, unlike the local limiter)."""
        return await self.handle.snapshot.remote()
