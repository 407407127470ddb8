"""The run's actors: how they are created, named and placed, started, observed and torn down.

Ray-facing plumbing for the driver (`cluster.driver`), which decides *when* to do each of these.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from instructflow.cluster.accounting import Progress, collect
from instructflow.cluster.output import OutputDir
from instructflow.config import Config


class RunError(RuntimeError):
    """A run that cannot start or had to stop; the message says why and what to do."""


@dataclass
class Topology:
    queues: dict[str, Any]
    gate: Any
    shards: list[Any]
    workers: list[Any]
    judges: list[Any]
    writer: Any
    instructors: dict[str, list[Any]]
    loops: dict[Any, str] = field(default_factory=dict)  # running loop's ObjectRef -> actor name

    def all_instructors(self) -> list[Any]:
        return [a for replicas in self.instructors.values() for a in replicas]


def actor_name(config: Config, role: str) -> str:
    """Name of one of the run's actors, e.g. `3f2a9c1b7d4e/writer` or `.../instructor:general:0`."""
    return f"{config.run_id}/{role}"


def build(config: Config, base_url: str, topics: list[str], out: OutputDir) -> Topology:
    """Creates every actor; nothing runs until `start`."""
    from instructflow.actors.instructor import InstructorActor
    from instructflow.actors.judge import JudgeActor
    from instructflow.actors.novelty import GateActor, NoveltyWorker, ShardActor
    from instructflow.actors.queue import QueueActor
    from instructflow.actors.writer import WriterActor

    def named(cls: Any, name: str, **options: Any) -> Any:
        # Named per run, so operators (and fault-injection tests) can find each actor.
        return cls.options(name=actor_name(config, name), **options)

    q = config.queues
    sizes = {"novelty": q.novelty, "judge": q.judge, "writer": q.writer}
    sizes.update({f"answer:{name}": q.answer for name in config.categories})
    queues = {name: named(QueueActor, f"queue:{name}").remote(name, size) for name, size in sizes.items()}
    writer = named(WriterActor, "writer").remote(
        out.uri,
        targets={n: p.count for n, p in config.categories.items()},
        rows_per_part=config.writer.rows_per_part,
        flush_interval_s=config.writer.flush_interval_s,
        run_id=config.run_id,
        keep_rejects=config.writer.keep_rejects,
        exports=list(config.writer.exports),
    )
    worker_opts, shard_opts = novelty_placement(config)
    shards = [named(ShardActor, f"shard:{i}", **shard_opts).remote(i, 384) for i in range(config.novelty.shards)]
    shard_names = [actor_name(config, f"shard:{i}") for i in range(config.novelty.shards)]
    gate = named(GateActor, "gate").remote(shard_names, config.novelty.threshold)
    workers = [
        named(NoveltyWorker, f"embedder:{i}", **worker_opts).remote(config, queues, gate, writer)
        for i in range(config.novelty.embedders)
    ]
    judges = [
        named(JudgeActor, f"judge:{i}").remote(config, base_url, queues, writer) for i in range(config.judge.replicas)
    ]
    instructors = {
        name: [
            named(InstructorActor, f"instructor:{name}:{r}").remote(config, name, r, base_url, topics, queues, writer)
            for r in range(params.replicas)
        ]
        for name, params in config.categories.items()
    }
    return Topology(queues, gate, shards, workers, judges, writer, instructors)


def novelty_placement(config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ray options for embedding workers and shards: on the embedding group when a custom resource
    is configured (zero CPUs, so nothing else competes for that group), else one CPU per worker."""
    n = config.novelty
    if n.resource:
        worker = {"num_cpus": 0, "resources": {n.resource: 1}, "num_gpus": n.gpus_per_embedder}
        return worker, {"num_cpus": 0, "resources": {n.resource: 0.25}}
    return {"num_cpus": min(float(n.torch_threads), 1.0), "num_gpus": n.gpus_per_embedder}, {}


def resume_index(topo: Topology) -> int:
    """Seeds the novelty index with the committed rows' stored vectors (no re-encoding)."""
    import ray

    ids, vectors = ray.get(topo.writer.committed_vectors.remote())
    if len(ids):
        ray.get(topo.gate.seed.remote(list(ids), vectors))
    return len(ids)


def actor_count(config: Config) -> int:
    n = config.novelty
    queues = 3 + len(config.categories)
    instructors = sum(p.replicas for p in config.categories.values())
    return queues + instructors + n.shards + n.embedders + config.judge.replicas + 3  # gate, writer, teacher gate


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
    loops = {f"novelty worker {i}": w.run.remote() for i, w in enumerate(topo.workers)}
    loops.update({f"judge {i}": j.run.remote() for i, j in enumerate(topo.judges)})
    loops["writer"] = topo.writer.pump.remote(topo.queues["writer"])
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
    import ray

    refs = {
        "writer": topo.writer.stats.remote(),
        "instructors": [a.stats.remote() for a in topo.all_instructors()],
        "workers": [w.stats.remote() for w in topo.workers],
        "judges": [j.stats.remote() for j in topo.judges],
        "queues": [qa.stats.remote() for qa in topo.queues.values()],
        "gate": topo.gate.stats.remote(),
    }
    got = {k: ray.get(v, timeout=timeout) for k, v in refs.items()}
    progress = collect(
        {n: p.count for n, p in config.categories.items()},
        got["writer"], got["instructors"], got["workers"], got["judges"], got["queues"],
    )
    progress.vectors = got["gate"]["vectors"]
    return progress


def teardown(config: Config, topo: Topology | None, base_url: str | None) -> None:
    """Kills the run's actors (and its teacher gate) so a later run in the same Ray can reuse names."""
    import ray

    from instructflow.actors.limiter import gate_name

    handles = [] if topo is None else [
        *topo.queues.values(), topo.gate, *topo.shards, *topo.workers, *topo.judges, topo.writer,
        *topo.all_instructors(),
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
