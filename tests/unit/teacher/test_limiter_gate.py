"""TeacherGate and RemoteLimiter: one limiter shared by two actors through a real local Ray."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402

from instructflow.actors.limiter import RemoteLimiter, gate_name, teacher_gate  # noqa: E402
from instructflow.cluster.config import Budget, Limits, TeacherConfig  # noqa: E402
from instructflow.instructors.teacher.api import BudgetExhausted  # noqa: E402
from instructflow.instructors.teacher.stub import StubTeacher  # noqa: E402

pytestmark = pytest.mark.ray
NAMESPACE = "instructflow-test-gate"


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

    async def chat(self, config: Any, base_url: str, n: int) -> int:
        from instructflow.instructors.teacher.client import TeacherClient

        client = TeacherClient(config, self.limiter, base_url=base_url)
        for _ in range(n):
            await client.chat([{"role": "user", "content": "hi"}], category="trivia", call="generate")
        return client.stats()["replies"]


def test_two_actors_share_one_gate(local_ray: None) -> None:
    url = "http://gate-test.invalid/v1"
    gate = teacher_gate(url, "m", Limits(max_in_flight=1), Budget(max_tokens_total=100), NAMESPACE)
    a, b = GateUser.remote(url, "m"), GateUser.remote(url, "m")
    assert ray.get(a.acquire.remote(), timeout=30) == "admitted"
    waiting = b.acquire.remote()  # the one slot is taken by a, in another process
    ready, _ = ray.wait([waiting], timeout=0.5)
    assert not ready, "b was admitted while a held the only slot"
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
