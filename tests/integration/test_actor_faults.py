"""Kill each actor kind mid-run on a real local Ray; the run must still finish with exactly the target
per category, unique ids, no near-duplicates and every part readable.

A background thread waits for the first committed rows, kills one named actor (`ray.kill` with
restarts allowed, or SIGKILL of its worker process), then waits for Ray to bring it back in a new
process. The driver's `run()` runs in the test thread the whole time.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster.driver import NAMESPACE, actor_name, run
from instructflow.config import parse_config
from tests.integration.conftest import stub_config
from tests.integration.dataset_checks import check_dataset, committed_rows

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(300)]  # a hung run fails, with stacks

TARGETS = {"general": 20, "trivia": 20}
THRESHOLD = 0.9
FIRST_COMMIT_S = 240.0  # actor start-up on a loaded two-core machine dominates
RESTART_S = 180.0  # an embedder restart reloads its model


def wait_for(check: Callable[[], Any], deadline_s: float, what: str, every_s: float = 0.05) -> Any:
    """Polls `check` until it returns something truthy; fails with `what` after `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)  # polling interval, bounded by the deadline
    raise TimeoutError(f"{what} (waited {deadline_s:.0f} s)")


def actor_pid(handle: Any, timeout: float) -> int:
    """The pid of the process an actor runs in (waits while the actor is restarting)."""
    import ray

    return ray.get(handle.__ray_call__.remote(lambda actor: os.getpid()), timeout=timeout)


class Killer(threading.Thread):
    """Kills the named actors once rows are committed, and waits until each is back."""

    def __init__(self, out: Path, names: list[str], how: str) -> None:
        super().__init__(name=f"kill {names}", daemon=True)
        self.out, self.actors, self.how = out, names, how
        self.rows_at_kill: int | None = None
        self.pids: dict[str, tuple[int, int]] = {}  # name -> (pid before, pid after the restart)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._kill_and_watch()
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def _kill_and_watch(self) -> None:
        import ray

        wait_for(lambda: committed_rows(self.out) > 0, FIRST_COMMIT_S, f"no committed rows before killing {self.actors}")
        handles = {name: ray.get_actor(name, namespace=NAMESPACE) for name in self.actors}
        before = {name: actor_pid(handle, timeout=60) for name, handle in handles.items()}
        self.rows_at_kill = committed_rows(self.out)
        for name, handle in handles.items():
            if self.how == "sigkill":
                os.kill(before[name], signal.SIGKILL)
            else:
                ray.kill(handle, no_restart=False)
        for name, handle in handles.items():
            after = wait_for(
                lambda h=handle, old=before[name]: (pid := actor_pid(h, timeout=RESTART_S)) != old and pid,
                RESTART_S, f"{name} did not come back in a new process",
            )
            self.pids[name] = (before[name], after)


# Actors whose restart is cheap and whose recoveries do not depend on each other are killed
# together, three to a run: every kill is still covered, for four fewer runs of the suite (~50 s).
KILLS = [
    ("instructor:general:0+instructor:trivia:0", "ray.kill", "every instructor replica killed (ray.kill) mid-run"),
    ("novelty:0", "ray.kill", "the embedding replica killed (ray.kill) mid-run"),
    ("gate", "sigkill", "the novelty gate's process SIGKILLed; its ledger is lost"),
    ("writer:0", "ray.kill", "the writer killed (ray.kill); pending rows lost"),
    ("writer:0", "sigkill", "the writer's process SIGKILLed mid-run"),
    ("shard:0+queue:novelty+ledger", "ray.kill",
     "together (ray.kill): a novelty shard (restarts empty), the novelty queue (restarts empty) and the "
     "run's books (the driver restores them)"),
    ("judge:0+queue:answer:general+teacher-limiter", "ray.kill",
     "together (ray.kill): the judge, an answer queue (restarts empty) and the run's teacher rate limiter "
     "(its window is lost)"),
]
EXPECTED = (
    "Ray restarts it; run ends at exactly the target, unique ids, no near-duplicates, all parts readable, "
    "books balance"
)


def full_name(config: Any, role: str) -> str:
    """The Ray actor name of one of the run's actors (the teacher limiter is named per endpoint)."""
    if role == "teacher-limiter":
        from instructflow.actors.limiter import gate_name

        return gate_name(config.teacher.base_url, config.teacher.model, config.run_id)
    return actor_name(config, role)


@pytest.fixture(scope="module")
def slow_stub():
    """A stub teacher slow enough that a kill lands while the run is still going."""
    from instructflow.instructors.teacher.stub import StubTeacher

    with StubTeacher(seed=11, latency_s=0.15, p_duplicate=0.2) as stub:
        yield stub


@pytest.mark.parametrize(
    ("role", "how"),
    [pytest.param(r, h, id=f"{r}-{h}", marks=pytest.mark.fault(fault=f, expected=EXPECTED)) for r, h, f in KILLS],
)
def test_run_survives_actor_death(ray_local, slow_stub, tmp_path, role, how):
    out = tmp_path / "out"
    seed = [(r, h) for r, h, _ in KILLS].index((role, how))  # a run id (and actor names) of its own
    data = stub_config(
        slow_stub, out,
        {"general": {"count": TARGETS["general"], "batch_size": 5, "concurrency": 2},
         "trivia": {"count": TARGETS["trivia"], "batch_size": 4, "concurrency": 2}},
        run={"display": "plain", "drain_timeout_s": 60, "seed": seed},
        novelty={"threshold": THRESHOLD},
        writer={"rows_per_part": 8, "flush_interval_s": 0.3},
    )
    config = parse_config(yaml.safe_dump(data))
    killer = Killer(out, [full_name(config, r) for r in role.split("+")], how)
    killer.start()
    try:
        progress = run(config)
    finally:
        killer.join(timeout=RESTART_S)
    assert killer.error is None, f"fault injection failed: {killer.error!r}"
    assert killer.rows_at_kill is not None and killer.rows_at_kill < sum(TARGETS.values()), (
        f"the kill landed after the run had finished ({killer.rows_at_kill} rows committed)"
    )
    assert len(killer.pids) == len(role.split("+")), killer.pids
    assert progress.all_done()
    check_dataset(out, TARGETS, THRESHOLD)
    for cat in TARGETS:  # every generated candidate is accepted, rejected, dropped or lost
        assert progress.generated[cat] == progress.books.terminal(cat) + progress.lost[cat], cat
        assert progress.books.accepted[cat] == TARGETS[cat], cat


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.fault(
    fault="the gate SIGKILLed, then the shard holding every admitted vector killed",
    expected="the restarted gate adopts the shards' contents and refills the shard; near-duplicates stay out",
)
def test_gate_then_shard_death_keeps_every_admitted_vector(ray_local):
    import ray

    from instructflow.actors.novelty import GateActor, ShardActor

    names = [f"double-fault/shard:{i}" for i in range(2)]
    shards = [ShardActor.options(name=name).remote(i, 4) for i, name in enumerate(names)]
    gate = GateActor.remote(names, 0.9, 4)
    try:
        first = unit_rows(np.eye(4))
        assert all(d.accepted for d in ray.get(gate.admit.remote(list("abcd"), first), timeout=60))
        before = actor_pid(gate, timeout=60)
        os.kill(before, signal.SIGKILL)
        wait_for(lambda: actor_pid(gate, timeout=RESTART_S) != before, RESTART_S, "the gate did not come back")
        assert ray.get(gate.stats.remote(), timeout=60).vectors == 4  # adopted from the shards
        held = max(range(2), key=lambda s: len(ray.get(shards[s].contents.remote())[1]))
        shard_pid = actor_pid(shards[held], timeout=60)
        ray.kill(shards[held], no_restart=False)
        wait_for(lambda: actor_pid(shards[held], timeout=RESTART_S) != shard_pid, RESTART_S, "the shard did not come back")
        near = unit_rows(np.eye(4) + 0.05)
        decisions = ray.get(gate.admit.remote(list("efgh"), near), timeout=60)
        assert [d.reason for d in decisions] == ["near_duplicate"] * 4, decisions
        assert ray.get(gate.stats.remote(), timeout=60).refills >= 1
    finally:
        for handle in [gate, *shards]:
            ray.kill(handle, no_restart=True)
