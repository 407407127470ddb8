"""A worker node dies mid-run on a real multi-node Ray; the run still ends with exactly the target.

`ray.cluster_utils.Cluster` starts a head (the driver's node, no custom resources) and three worker
nodes on this machine. Each worker advertises two of the custom resources that `placement` and
`novelty.resource` ask for, so every stage has two possible homes and survives the loss of any one:

    A: instructor, novelty        B: novelty, writer        C: instructor, writer

Ray packs each stage onto the first node (by id) that can take it, so one worker node ends up with
two of the three stage kinds and another node with the third. Once rows are committed, a background
thread finds the node of every actor of the run, removes the worker node hosting the most stage
kinds (raylet and worker processes SIGKILLed, as when a machine or pod is lost), and waits until each
stage replica that ran there answers from a surviving node. The driver's `run()` runs in the test
thread the whole time (it installs signal handlers, which only the main thread may do).

The package's `ray_local` may already be running in this process: it is shut down for this module
and started again afterwards, and the machine's record of "the" local Ray cluster is left as found.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster.driver import NAMESPACE, actor_name, run
from instructflow.cluster.graph import GRAPH
from instructflow.config import Config, parse_config
from tests.integration.conftest import start_local_ray, stub_config
from tests.integration.dataset_checks import check_dataset, committed_rows
from tests.integration.raycluster import address_record, free_port
from tests.integration.test_actor_faults import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(480)]  # a hung run fails, with stacks

TARGETS = {"general": 30, "trivia": 30}
THRESHOLD = 0.9
# Worker node -> the custom resources it advertises; amounts leave room for the replicas that come
# over from a dead node (and keep each node's utilisation low, so Ray packs rather than spreads).
NODES: dict[str, dict[str, float]] = {
    "A": {"instructor": 16, "novelty": 8},
    "B": {"novelty": 8, "writer": 4},
    "C": {"instructor": 16, "writer": 4},
}
STAGE_KINDS = ("instructor", "novelty", "writer")  # the stages pinned to worker nodes
FIRST_COMMIT_S = 240.0  # four raylets and the actors' start-up on a loaded two-core machine
RESTART_S = 180.0  # node-death detection, rescheduling, and an embedder reloading its model


def _restore(record: Path, text: str | None) -> None:
    if text is None:
        record.unlink(missing_ok=True)
    else:
        record.write_text(text)


@pytest.fixture
def cluster():
    """A head and the three worker nodes of `NODES`; yields (cluster, {name: node}) with this
    process connected as the driver."""
    import ray
    from ray.cluster_utils import Cluster

    had_local = ray.is_initialized()  # `ray_local`, started by an earlier module of the package
    if had_local:
        ray.shutdown()
    record = address_record()
    found = record.read_text() if record.exists() else None
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "include_dashboard": False,
            "dashboard_agent_listen_port": free_port(),  # Ray's fixed default collides with other Rays here
            # A removed node is declared dead after ~5 s instead of ~15 s (Ray's default).
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 5},
        },
    )
    # The head recorded itself as the machine's default cluster: runs of other sessions on this
    # machine that join "the" local Ray must not find this one.
    _restore(record, found)
    try:
        nodes = {name: cluster.add_node(num_cpus=1, resources=res) for name, res in NODES.items()}
        cluster.wait_for_nodes(timeout=120)
        ray.init(address=cluster.address, namespace=NAMESPACE, logging_level="WARNING")
        assert ray.get_runtime_context().get_node_id() == cluster.head_node.node_id, "the driver is not on the head"
        yield cluster, nodes
    finally:
        ray.shutdown()
        found = record.read_text() if record.exists() else None
        cluster.shutdown()  # also deletes the record, which may be another session's by now
        _restore(record, found)
        if had_local:
            start_local_ray()


def run_roles(config: Config) -> list[str]:
    """Every actor of the run, by role (see `actor_name`)."""
    stages = [f"{d.name}:{i}" for d in GRAPH.stages if not d.source for i in range(d.replicas(config))]
    instructors = [f"instructor:{c}:{r}" for c, p in config.categories.items() for r in range(p.replicas)]
    shards = [f"shard:{i}" for i in range(config.novelty.shards)]
    queues = [f"queue:{q}" for q in GRAPH.queues(config)]
    return [*instructors, *stages, *shards, "gate", "ledger", *queues]


def kind(role: str) -> str:
    return role.split(":")[0]


class NodeKiller(threading.Thread):
    """Removes the worker node that hosts the most stage kinds once rows are committed, and waits
    until every stage replica that ran there is back on a surviving node."""

    def __init__(self, cluster: Any, nodes: dict[str, Any], config: Config, out: Path) -> None:
        super().__init__(name="node killer", daemon=True)
        self.cluster, self.nodes, self.config, self.out = cluster, nodes, config, out
        self.names = {node.node_id: name for name, node in nodes.items()}
        self.names[cluster.head_node.node_id] = "head"
        self.before: dict[str, str] = {}  # role -> node name, just before the kill
        self.after: dict[str, str] = {}  # role -> node name, once back (stage replicas of the victim)
        self.victim: str | None = None
        self.rows_at_kill: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._kill_and_watch()
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def node_of(self, role: str, timeout: float) -> str:
        """The name of the node the actor runs on (waits while it is restarting)."""
        import ray

        handle = ray.get_actor(actor_name(self.config, role), namespace=NAMESPACE)
        node_id = ray.get(handle.__ray_call__.remote(lambda actor: ray.get_runtime_context().get_node_id()), timeout=timeout)
        return self.names.get(node_id, node_id)

    def stage_kinds(self) -> dict[str, set[str]]:
        """Worker node -> the pinned stage kinds it hosts."""
        kinds: dict[str, set[str]] = defaultdict(set)
        for role, node in self.before.items():
            if kind(role) in STAGE_KINDS:
                kinds[node].add(kind(role))
        return kinds

    def _kill_and_watch(self) -> None:
        wait_for(lambda: committed_rows(self.out) > 0, FIRST_COMMIT_S, "no committed rows before the node kill")
        self.before = {role: self.node_of(role, timeout=60) for role in run_roles(self.config)}
        kinds = self.stage_kinds()
        self.victim = max(kinds, key=lambda n: (len(kinds[n]), "writer" in kinds[n]))
        self.rows_at_kill = committed_rows(self.out)
        self.cluster.remove_node(self.nodes[self.victim], allow_graceful=False)
        for role in [r for r, n in self.before.items() if n == self.victim and kind(r) in STAGE_KINDS]:
            self.after[role] = wait_for(
                lambda r=role: self._back_elsewhere(r), RESTART_S, f"{role} did not come back on a surviving node"
            )

    def _back_elsewhere(self, role: str) -> str | None:
        import ray

        try:
            node = self.node_of(role, timeout=10)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
            return None  # still restarting (or its old incarnation just died): ask again
        return node if node != self.victim else None


@pytest.fixture(scope="module")
def slow_stub():
    """A stub teacher slow enough that the kill lands while the run is still going."""
    from instructflow.instructors.teacher.stub import StubTeacher

    with StubTeacher(seed=13, latency_s=0.15, p_duplicate=0.2) as stub:
        yield stub


@pytest.mark.fault(
    fault="a worker node of a 4-node Ray cluster removed mid-run (the stage replicas and shards on it die)",
    expected="Ray restarts them on the surviving nodes; exactly the target, unique ids, no near-duplicates, books balance",
)
def test_run_survives_the_loss_of_a_worker_node(cluster, slow_stub, tmp_path: Path) -> None:
    import ray

    ray_cluster, nodes = cluster
    out = tmp_path / "out"
    data = stub_config(
        slow_stub, out,
        {"general": {"count": TARGETS["general"], "batch_size": 5, "concurrency": 2},
         "trivia": {"count": TARGETS["trivia"], "batch_size": 4, "concurrency": 2}},
        run={"drain_timeout_s": 60, "stall_timeout_s": 300},
        novelty={"threshold": THRESHOLD, "resource": "novelty", "embedders": 1},
        writer={"rows_per_part": 8, "flush_interval_s": 0.3},
        placement={"instructor": "instructor", "writer": "writer"},
    )
    config = parse_config(yaml.safe_dump(data))
    killer = NodeKiller(ray_cluster, nodes, config, out)
    killer.start()
    try:
        progress = run(config, address=ray_cluster.address)
    finally:
        killer.join(timeout=RESTART_S)
    where = f"placement before the kill: {killer.before}; victim {killer.victim}; after: {killer.after}"
    print(where)
    assert killer.error is None, f"fault injection failed: {killer.error!r}; {where}"

    # The layout was what the test means: each stage on a node that advertises its resource, the
    # stages spread over more than one worker node, and the kill landed mid-run.
    for role, node in killer.before.items():
        if kind(role) in STAGE_KINDS or kind(role) == "shard":
            resource = "novelty" if kind(role) == "shard" else kind(role)
            assert resource in NODES.get(node, {}), f"{role} ran on {node}, which lacks {resource!r}; {where}"
    # The books and the gate stay with the driver, so no worker node takes them (nor the gate
    # together with the shards) down.
    assert killer.before["ledger"] == killer.before["gate"] == "head", where
    kinds = killer.stage_kinds()
    assert set().union(*kinds.values()) == set(STAGE_KINDS) and len(kinds) >= 2, where
    assert killer.rows_at_kill is not None and killer.rows_at_kill < sum(TARGETS.values()), (
        f"the kill landed after the run had finished ({killer.rows_at_kill} rows committed)"
    )
    assert killer.after and all(n != killer.victim for n in killer.after.values()), where
    assert len(ray.nodes()) - sum(n["Alive"] for n in ray.nodes()) == 1, "exactly one node died"

    assert progress.all_done(), progress
    check_dataset(out, TARGETS, THRESHOLD)
    b = progress.books
    for cat, target in TARGETS.items():
        assert b.accepted[cat] == target, (cat, b.accepted[cat])
        assert b.terminal(cat) <= progress.generated[cat], f"{cat}: counted twice ({b.terminal(cat)} > {progress.generated[cat]})"
        assert progress.generated[cat] == b.terminal(cat) + progress.lost[cat], cat
