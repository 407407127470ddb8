"""The run's actors: how they are created from the stage graph, named and placed, started,
observed and torn down.

Ray-facing plumbing for the driver (`cluster.driver`), which decides *when* to do each of these.
What exists and how it connects is declared in `cluster.graph.GRAPH`.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any

from instructflow.actors.core.ledger import Ledger, Report, Reporter, newer_reports
from instructflow.cluster.accounting import Progress
from instructflow.cluster.graph import GRAPH
from instructflow.cluster.output import OutputDir
from instructflow.config import Config
from instructflow.instructors.characters import Card
from instructflow.instructors.teacher.api import TeacherStats


class RunError(RuntimeError):
    """A run that cannot start or had to stop; the message says why and what to do."""


@dataclass
class Topology:
    queues: dict[str, Any]  # queue name (edge) -> QueueActor
    ledger: Any
    gate: Any
    shards: list[Any]
    stages: dict[str, list[Any]]  # stage name -> StageActor replicas (novelty, judge, writer)
    instructors: dict[str, list[Any]]  # category -> InstructorActor replicas
    loops: dict[Any, str] = field(default_factory=dict)  # running loop's ObjectRef -> replica role
    baseline: dict[str, int] = field(default_factory=dict)  # rows committed before this run started
    reporter: Reporter = field(default_factory=lambda: Reporter("driver"))  # what the driver drops
    books: dict[str, Report] = field(default_factory=dict)  # the ledger's reports at the last snapshot
    ledger_incarnation: str | None = None
    limiter: Any = None  # the endpoint's rate limiter (spent tokens and dollars); set by the driver

    @property
    def writer(self) -> Any:
        return self.stages["writer"][0]

    def all_instructors(self) -> list[Any]:
        return [a for replicas in self.instructors.values() for a in replicas]


def actor_name(config: Config, role: str) -> str:
    """Name of one of the run's actors, e.g. `3f2a9c1b7d4e/writer:0` or `.../instructor:general:0`."""
    return f"{config.run_id}/{role}"


def build(
    config: Config, base_url: str, topics: list[str], out: OutputDir, cards: list[Card] | None = None
) -> Topology:
    """Creates every actor the graph declares; nothing runs until `start`. `cards`: the character
    cards instructors may play (`Instructor.cards`)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from instructflow.actors.instructor import InstructorActor
    from instructflow.actors.judge import judge_stage
    from instructflow.actors.novelty import GateActor, ShardActor, novelty_stage
    from instructflow.actors.queue import QueueActor
    from instructflow.actors.stage import LedgerActor, StageActor
    from instructflow.actors.writer import writer_stage

    def named(cls: Any, role: str, **options: Any) -> Any:
        # Named per run, so that actors find each other (and operators and fault tests find them).
        return cls.options(name=actor_name(config, role), **options)

    queues = {q: named(QueueActor, f"queue:{q}").remote(q, size) for q, size in GRAPH.queues(config).items()}
    names = {q: actor_name(config, f"queue:{q}") for q in queues}
    names["ledger"] = actor_name(config, "ledger")
    names["gate"] = actor_name(config, "gate")
    names["rejects"] = names["writer_stage"] = actor_name(config, "writer:0")
    # The books and the novelty gate live on the driver's node: a run cannot outlive that node
    # anyway, and a worker node that dies then never takes the run's counts with it, nor the gate
    # together with the shards (the gate's ledger is the only other copy of the index; an actor that
    # asks for no resources otherwise lands on a node chosen at random, shards' node included).
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    ledger = named(LedgerActor, "ledger", scheduling_strategy=here).remote()

    worker_opts, shard_opts = novelty_placement(config)
    shards = [named(ShardActor, f"shard:{i}", **shard_opts).remote(i, 384) for i in range(config.novelty.shards)]
    gate = named(GateActor, "gate", scheduling_strategy=here).remote(
        [actor_name(config, f"shard:{i}") for i in range(config.novelty.shards)], config.novelty.threshold
    )
    writer_options = {
        "targets": {n: p.count for n, p in config.categories.items()},
        "rows_per_part": config.writer.rows_per_part,
        "flush_interval_s": config.writer.flush_interval_s,
        "run_id": config.run_id,
        "keep_rejects": config.writer.keep_rejects,
        "exports": list(config.writer.exports),
    }
    recipes = {
        "novelty": (functools.partial(novelty_stage, config, actor_name(config, "gate")), worker_opts),
        "judge": (functools.partial(judge_stage, config, base_url, out.uri), stage_placement(config, "judge")),
        "writer": (functools.partial(writer_stage, out.uri, **writer_options), stage_placement(config, "writer")),
    }
    stages: dict[str, list[Any]] = {}
    for decl in GRAPH.stages:
        if decl.source:
            continue
        recipe, options = recipes[decl.name]
        wiring = {**names, "input": names[decl.takes or ""]}
        if not config.writer.keep_rejects:
            wiring.pop("rejects")
        stages[decl.name] = [
            named(StageActor, f"{decl.name}:{i}", **options).remote(f"{decl.name}:{i}", recipe, wiring)
            for i in range(decl.replicas(config))
        ]
    instructors = {
        name: [
            named(InstructorActor, f"instructor:{name}:{r}", **stage_placement(config, "instructor")).remote(
                config, name, r, base_url, topics,
                {**names, "answer": names[f"answer:{name}"], "writer": names["writer_stage"]},
                output_uri=out.uri, cards=cards,
            )
            for r in range(params.replicas)
        ]
        for name, params in config.categories.items()
    }
    return Topology(queues, ledger, gate, shards, stages, instructors)


def novelty_placement(config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ray options for embedding replicas and shards: on the embedding group when a custom resource
    is configured (zero CPUs, so nothing else competes for that group), else one CPU per replica."""
    n = config.novelty
    if n.resource:
        worker = {"num_cpus": 0, "resources": {n.resource: 1}, "num_gpus": n.gpus_per_embedder}
        return worker, {"num_cpus": 0, "resources": {n.resource: 0.25}}
    return {"num_cpus": min(float(n.torch_threads), 1.0), "num_gpus": n.gpus_per_embedder}, {}


def stage_placement(config: Config, stage: str) -> dict[str, Any]:
    """Ray options for one replica of `stage` (instructor, judge, writer): one unit of the custom
    resource `placement.<stage>` names, so it runs only where that is advertised (its small CPU
    share stays as declared on the actor class); no options when the key is null."""
    resource = getattr(config.placement, stage)
    return {"resources": {resource: 1}} if resource else {}


def resume_index(topo: Topology) -> int:
    """Seeds the novelty index with the committed rows' stored vectors (no re-encoding)."""
    import ray

    topo.baseline = dict(ray.get(topo.writer.call.remote("counts")))
    ids, vectors = ray.get(topo.writer.call.remote("committed_vectors"))
    if len(ids):
        ray.get(topo.gate.seed.remote(list(ids), vectors))
    return len(ids)


def actor_count(config: Config) -> int:
    n = config.novelty
    stages = sum(d.replicas(config) for d in GRAPH.stages)
    return len(GRAPH.queues(config)) + stages + n.shards + 3  # gate, ledger, teacher gate


def wait_ready(config: Config, topo: Topology, timeout: float = 300.0) -> None:
    """Waits until every actor has been constructed (model loads, imports), with a clear error."""
    import ray

    try:
        snapshot(config, topo, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise RunError(
            f"the pipeline's actors were not ready within {timeout:.0f} s; the cluster may lack the "
            "CPUs or custom resources they ask for (see `ray status`)"
        ) from None
    except ray.exceptions.RayActorError as exc:
        if not exc.actor_init_failed:
            raise
        # A constructor raised (e.g. the API key variable is set for the driver but not in the
        # workers' environment): its last traceback line is the message the user needs.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        kind, _, message = (lines[-1] if lines else "unknown error").partition(": ")
        cause = f"{kind.rsplit('.', 1)[-1]}: {message}" if message else kind
        raise RunError(f"an actor of the run could not start: {cause}") from None


def start(topo: Topology) -> None:
    loops = {}
    for stage, replicas in topo.stages.items():
        # "writer", or "judge 0", "judge 1", ...: the name a failure message starts with
        loops.update({stage if len(replicas) == 1 else f"{stage} {i}": a.run.remote() for i, a in enumerate(replicas)})
    for name, actors in topo.instructors.items():
        loops.update({f"instructor {name}/{r}": a.run.remote() for r, a in enumerate(actors)})
    topo.loops = {ref: name for name, ref in loops.items()}


def finished_loops(topo: Topology, timeout: float) -> tuple[list[str], str | None]:
    """Names of loops that have ended, and the first failure among them (as a message)."""
    import ray

    refs = list(topo.loops)
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    names, failure = [], None
    for ref in ready:
        names.append(topo.loops[ref])
        try:
            ray.get(ref)
        except Exception as exc:  # the stage's own error, e.g. the writer's OutputError
            failure = failure or f"{topo.loops[ref]} failed: {getattr(exc, 'cause', None) or exc}"
    return names, failure


def snapshot(config: Config, topo: Topology, timeout: float = 60.0) -> Progress:
    """The books and every actor's stats, gathered into one `Progress`."""
    import ray

    refs = {
        "books": _books(topo, timeout),
        "instructors": [a.stats.remote() for a in topo.all_instructors()],
        "stages": [a.stats.remote() for replicas in topo.stages.values() for a in replicas],
        "queues": [q.stats.remote() for q in topo.queues.values()],
        "gate": topo.gate.stats.remote(),
        "limiter": topo.limiter.snapshot.remote() if topo.limiter is not None else None,
    }
    got = {k: v if k in ("books", "limiter") else ray.get(v, timeout=timeout) for k, v in refs.items()}
    # A report the books lack (sent to a ledger that died before the driver's copy of it was taken,
    # by a replica that has nothing more to report, or still on its way) is handed over from here,
    # so the books hold every replica's newest total, the final ones included.
    newer = newer_reports(topo.books, [s.report for s in [*got["instructors"], *got["stages"]]])
    if newer:
        ray.get(topo.ledger.restore.remote(newer), timeout=timeout)
        got["books"] = _books(topo, timeout)
    p = Progress(targets={n: p.count for n, p in config.categories.items()}, books=got["books"])
    p.vectors = got["gate"].vectors
    p.released = got["gate"].released
    if got["limiter"] is not None:
        try:
            spent = ray.get(got["limiter"], timeout=timeout)
        except Exception:  # noqa: BLE001 - a limiter restarting: no spend this tick, the run goes on
            spent = None
        if spent:
            # The limiter outlives instructor and judge restarts, whose own counts start again at 0.
            p.spent_tokens = int(spent["prompt_tokens"]) + int(spent["completion_tokens"])
            p.usd = float(spent["cost_spent_usd"]) if config.teacher.budget.prices else None
    for q in got["queues"]:
        p.queue_depths[q.name] = q.depth
        p.visible.update(q.by_category)
        if q.name in ("judge", "writer"):
            p.finishing += sum(q.by_category.values())
            p.downstream.update(q.by_category)
        elif q.name.startswith("answer:"):
            p.awaiting_answer.update(q.by_category)
    for s in got["stages"]:
        p.visible.update(s.held)
        if s.role.startswith(("judge", "writer")):
            p.finishing += sum(s.held.values())
            p.downstream.update(s.held)
        if s.fatal:
            p.outcomes.append(f"fatal: {s.fatal}")
        detail = s.detail
        if s.role.startswith("writer"):
            p.committed.update(detail.committed)
            p.accepted.update(detail.accepted)
            p.kept_tokens.update(detail.kept_tokens)
            # This run's accepted rows: committed (durable) or pending in the live writer.
            for cat, n in detail.accepted.items():
                p.books.accepted[cat] = max(0, n - topo.baseline.get(cat, 0))
        elif s.role.startswith("judge") and detail.teacher:
            _add_usage(p, detail.teacher)
    for s in got["instructors"]:
        p.visible[s.category] += s.held
        p.finishing += s.answering
        p.answering[s.category] += s.answering
        p.unreported[s.category] += s.unreported
        p.producers.setdefault(s.category, []).append(s)
        p.calls_in_flight[s.category] += s.calls_in_flight
        p.quota[s.category] += s.quota
        p.failures.update({k: v for k, v in s.failures.items() if k in PRODUCER_FAILURES})
        _add_usage(p, s.teacher)
        if s.outcome:
            p.outcomes.append(s.outcome)
    return p


def _books(topo: Topology, timeout: float) -> Ledger:
    """The ledger's books; a ledger that restarted empty is first restored from the last copy."""
    import ray

    books, reports, incarnation = ray.get(topo.ledger.snapshot.remote(), timeout=timeout)
    if topo.ledger_incarnation not in (None, incarnation) and topo.books:
        ray.get(topo.ledger.restore.remote(topo.books), timeout=timeout)
        books, reports, incarnation = ray.get(topo.ledger.snapshot.remote(), timeout=timeout)
    topo.books, topo.ledger_incarnation = reports, incarnation
    return books


# Failed calls only the instructor sees (the HTTP request itself succeeded): the reply could not be
# parsed, or the instructor's own code raised. Other failure reasons come from the teacher client.
PRODUCER_FAILURES = ("unparseable", "instructor_error")


def _add_usage(p: Progress, teacher: TeacherStats | None) -> None:
    if teacher is None:
        return
    p.prompt_tokens += teacher.prompt_tokens
    p.completion_tokens += teacher.completion_tokens
    p.failures.update(teacher.failures)
    p.requests.update(teacher.requests)
    p.retries += teacher.retries
    p.replies += teacher.replies
    p.truncated += teacher.truncated
    p.batch.update(teacher.batch)


def retire(config: Config, topo: Topology, category: str, reason: str) -> None:
    """Stops a category: its replicas stop, its answer queue is retired (what it held is dropped for
    `reason` in the books), and later puts to it are dropped instead of blocking the novelty stage."""
    for a in topo.instructors[category]:
        a.stop.remote()
    retire_queue(topo, f"answer:{category}", reason)


def retire_queue(topo: Topology, queue: str, reason: str) -> None:
    """Closes a queue for good; what it still holds is recorded as dropped for `reason`."""
    import ray

    gone = ray.get(topo.queues[queue].retire.remote(reason))
    if gone:
        delta = Ledger()
        delta.dropped.update({(cat, reason): n for cat, n in gone.items()})
        ray.get(topo.ledger.submit.remote(topo.reporter.add(delta)))


def teardown(config: Config, topo: Topology | None, base_url: str | None) -> None:
    """Kills the run's actors (and its teacher gate) so a later run in the same Ray can reuse names."""
    import ray

    from instructflow.actors.limiter import gate_name

    handles = [] if topo is None else [
        *topo.queues.values(), topo.ledger, topo.gate, *topo.shards,
        *[a for replicas in topo.stages.values() for a in replicas], *topo.all_instructors(),
    ]
    if base_url is not None:
        with contextlib.suppress(ValueError):  # not created yet
            handles.append(ray.get_actor(gate_name(base_url, config.teacher.model, config.run_id)))
    for handle in handles:
        with contextlib.suppress(Exception):  # already dead is fine
            ray.kill(handle, no_restart=True)
    if config.teacher.kind == "embedded":
        from instructflow.actors.teacher_serve import stop_embedded_teacher

        with contextlib.suppress(Exception):  # a teacher someone else started stays up
            stop_embedded_teacher()
