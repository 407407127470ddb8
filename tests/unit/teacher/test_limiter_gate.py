"""TeacherGate and RemoteLimiter: one limiter shared by two actors through a real local Ray."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402

from instructflow.actors.limiter import RemoteLimiter, gate_name, teacher_gate  # noqa: E402
from instructflow.config import Budget, Limits, TeacherConfig  # noqa: E402
from instructflow.instructors.teacher.api import BudgetExhausted  # noqa: E402
from instructflow.instructors.teacher.stub import StubTeacher  # noqa: E402

pytestmark = pytest.mark.ray
NAMESPACE = "instructflow-test-gate"
WAIT_S = 30  # bound on every wait for an event below; reaching it is a failure


def gate_until(gate: Any, holds: Callable[[dict], bool], what: str) -> dict:
    """Polls the gate's snapshot until `holds(snapshot)`; fails naming `what` after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not holds(snap := ray.get(gate.snapshot.remote(), timeout=WAIT_S)):
        assert time.monotonic() < deadline, f"the gate never showed {what} within {WAIT_S} s: {snap}"
        time.sleep(0.01)  # polling interval, not synchronisation
    return snap


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # address="local": our own small cluster, even when another one on this machine is running.
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NAMESPACE, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@ray.remote(num_cpus=0)
class GateUser:
    """An actor that reaches the gate by name, as instructor actors do."""

    def __init__(self, base_url: str, model: str) -> None:
        self.limiter = RemoteLimiter(teacher_gate(base_url, model, Limits(), Budget(), NAMESPACE))

    async def acquire(self) -> str:
        try:
            await self.limiter.acquire(10)
        except BudgetExhausted as exc:
            return f"budget: {exc}"
        return "admitted"

    async def release(self, tokens: int) -> None:
        await self.limiter.release(outcome="ok", model="m", prompt_tokens=tokens, completion_tokens=0)

    async def burst(self, n: int, cap: int) -> tuple[int, int]:
        """n concurrent acquire -> hold -> release; returns (peak admitted at once, round trips).

        An admitted request holds its slot until `cap` are held (or every request not yet finished
        is), so the window fills by events, not by how long a slot happens to be held."""
        active = peak = done = 0
        changed = asyncio.Condition()

        async def one() -> None:
            nonlocal active, peak, done
            await self.limiter.acquire(1)
            async with changed:
                active += 1
                peak = max(peak, active)
                changed.notify_all()
                await asyncio.wait_for(changed.wait_for(lambda: active >= min(cap, n - done)), WAIT_S)
            await self.limiter.release(outcome="ok", model="m", prompt_tokens=1, completion_tokens=0)
            async with changed:
                active -= 1
                done += 1
                changed.notify_all()

        await asyncio.gather(*[one() for _ in range(n)])
        return peak, self.limiter.round_trips

    async def give_up_waiting(self, n: int) -> int:
        """Starts n acquires, cancels them all once the gate holds them waiting; returns how many
        had been admitted."""
        tasks = [asyncio.create_task(self.limiter.acquire(1)) for _ in range(n)]
        deadline = time.monotonic() + WAIT_S
        while (await self.limiter.handle.snapshot.remote())["waiting"] == 0:  # one batched request
            assert time.monotonic() < deadline, f"the acquires never reached the gate within {WAIT_S} s"
            await asyncio.sleep(0.01)  # polling interval, not synchronisation
        admitted = sum(t.done() and not t.cancelled() and t.exception() is None for t in tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return admitted

    async def chat(self, config: Any, base_url: str, n: int) -> int:
        from instructflow.instructors.teacher.client import TeacherClient

        client = TeacherClient(config, self.limiter, base_url=base_url)
        for _ in range(n):
            await client.chat([{"role": "user", "content": "hi"}], category="trivia", call="generate")
        return client.stats().replies


def test_two_actors_share_one_gate(local_ray: None) -> None:
    url = "http://gate-test.invalid/v1"
    gate = teacher_gate(url, "m", Limits(max_in_flight=1), Budget(max_tokens_total=100), NAMESPACE)
    a, b = GateUser.remote(url, "m"), GateUser.remote(url, "m")
    assert ray.get(a.acquire.remote(), timeout=30) == "admitted"
    waiting = b.acquire.remote()  # the one slot is taken by a, in another process
    snap = gate_until(gate, lambda s: s["waiting"] == 1, "b waiting")
    ready, _ = ray.wait([waiting], timeout=0)
    assert not ready and snap["in_flight"] == 1, f"b was admitted while a held the only slot: {snap}"
    ray.get(a.release.remote(60), timeout=30)
    assert ray.get(waiting, timeout=30) == "admitted"
    ray.get(b.release.remote(50), timeout=30)  # 110 of 100 tokens spent
    assert ray.get(a.acquire.remote(), timeout=30).startswith("budget: token budget spent: 110 of 100")
    snap = ray.get(gate.snapshot.remote(), timeout=30)
    assert snap["outcomes"] == {"ok": 2} and snap["tokens_spent"] == 110 and snap["in_flight"] == 0
    assert ray.get_actor(gate_name(url, "m"), namespace=NAMESPACE)._actor_id == gate._actor_id


def test_teacher_clients_in_two_actors_respect_the_shared_cap(local_ray: None) -> None:
    config = TeacherConfig(kind="openai", api_key_env=None, model="stub-model", timeout_s=10)
    with StubTeacher(latency_s=0.05) as stub:
        gate = teacher_gate(stub.base_url, "stub-model", Limits(max_in_flight=2), Budget(), NAMESPACE)
        users = [GateUser.remote(stub.base_url, "stub-model") for _ in range(2)]
        replies = ray.get([u.chat.remote(config, stub.base_url, 6) for u in users], timeout=60)
        stats = stub.stats()
    assert replies == [6, 6]
    assert stats["requests"] == 12 and stats["max_concurrency_seen"] <= 2
    assert ray.get(gate.snapshot.remote(), timeout=30)["outcomes"] == {"ok": 12}


def test_concurrent_requests_share_round_trips_and_keep_the_cap(local_ray: None) -> None:
    url = "http://gate-burst.invalid/v1"
    gate = teacher_gate(url, "m", Limits(max_in_flight=8), Budget(), NAMESPACE)
    user = GateUser.remote(url, "m")
    peak, round_trips = ray.get(user.burst.remote(64, 8), timeout=60)
    snap = ray.get(gate.snapshot.remote(), timeout=30)
    assert peak == 8, "the gate's cap of 8 was not filled, or was exceeded"
    assert snap["outcomes"] == {"ok": 64} and snap["in_flight"] == 0
    # One call per acquire and per release would be 128 round trips.
    assert round_trips < 64, round_trips


def test_waiters_that_give_up_leave_no_slot_taken(local_ray: None) -> None:
    url = "http://gate-cancel.invalid/v1"
    gate = teacher_gate(url, "m", Limits(max_in_flight=1), Budget(), NAMESPACE)
    holder, quitter = GateUser.remote(url, "m"), GateUser.remote(url, "m")
    assert ray.get(holder.acquire.remote(), timeout=30) == "admitted"
    assert ray.get(quitter.give_up_waiting.remote(5), timeout=60) == 0  # all were waiting
    ray.get(holder.release.remote(1), timeout=30)
    assert ray.get(holder.acquire.remote(), timeout=30) == "admitted"  # nobody else holds the slot
    ray.get(holder.release.remote(1), timeout=30)
    snap = ray.get(gate.snapshot.remote(), timeout=30)
    assert snap["in_flight"] == 0 and snap["waiting"] == 0, snap
