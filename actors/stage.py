"""The one actor shell every pipeline stage runs in, and the actor that keeps the run's books.

`StageActor` builds a stage core (`core.stage.Stage`) from a picklable recipe and runs it in a
`core.stage.StageLoop` between its input queue and its output edges. Queues, the books and the
rejects log are found by name, never passed as handles: arguments that live in Ray's object store
could be gone when Ray restarts the actor, and names survive any restart.

Restarts: Ray rebuilds a dead replica from the same recipe and retries its `run`; the candidates
the old replica held are not reported by anyone and end up counted as lost (`core.ledger`).
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import ray

from instructflow.actors import metrics
from instructflow.actors.core.ledger import Accounts, Ledger, Report, Reporter
from instructflow.actors.core.stage import Outcome, Stage, StageLoop, StageStats
from instructflow.instructors.record import Candidate

log = logging.getLogger(__name__)

# The reject-metric stage label and the pass-metric stage of each stage (see actors.metrics).
_METRIC_STAGES: dict[str, tuple[str, str | None]] = {
    "novelty": ("novelty", "novel"),
    "judge": ("judge", "judged"),
    "writer": ("write", None),  # written rows are counted at commit
}


def observe(stage: str, outcome: Outcome) -> None:
    """Metrics for one batch's outcome."""
    reject_stage, pass_stage = _METRIC_STAGES.get(stage, (stage, None))
    for cand, reason in [*outcome.rejected, *outcome.dropped]:
        metrics.inc("rejects", 1, category=cand.category, stage=reject_stage, reason=reason)
    if pass_stage:
        for cands in outcome.outputs.values():
            for cand in cands:
                metrics.inc("candidates", 1, category=cand.category, stage=pass_stage)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class LedgerActor:
    """The run's books (`core.ledger.Accounts`). It only keeps numbers; it lives with the driver,
    and if it restarts anyway the driver restores it from its last snapshot."""

    def __init__(self) -> None:
        self.accounts = Accounts()
        self.incarnation = uuid.uuid4().hex[:12]

    def submit(self, report: Report) -> None:
        self.accounts.submit(report)

    def restore(self, reports: dict[str, Report]) -> None:
        self.accounts.restore(reports)

    def snapshot(self) -> tuple[Ledger, dict[str, Report], str]:
        """The books, the reports they sum, and this ledger's incarnation."""
        return self.accounts.snapshot(), dict(self.accounts.reports), self.incarnation


class Edges:
    """Named queue actors, looked up once each: the input, the output edges, the books, the rejects log."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self._handles: dict[str, Any] = {}

    def __call__(self, edge: str) -> Any:
        if edge not in self._handles:
            if edge not in self.names:
                raise KeyError(f"no queue is declared for edge {edge!r} (known: {sorted(self.names)})")
            self._handles[edge] = ray.get_actor(self.names[edge])
        return self._handles[edge]


@ray.remote(num_cpus=0.1, max_restarts=-1, max_task_retries=-1)
class StageActor:
    """One replica of one stage.

    Args:
        role: the replica's name in the graph, e.g. ``judge:0``.
        build: a picklable recipe that returns the stage core (called again on every restart).
        names: actor names by edge: ``input`` (the queue it takes from), every output edge it may
            use, ``ledger`` (the books) and optionally ``rejects`` (the actor that logs rejects).
    """

    def __init__(self, role: str, build: Callable[[], Stage], names: dict[str, str]) -> None:
        self.role = role
        self.incarnation = uuid.uuid4().hex[:12]
        self.edges = Edges(names)
        self.reporter = Reporter(f"{role}/{self.incarnation}")
        self.core = build()
        self.loop = StageLoop(
            self.core,
            take=self._take,
            put=self._put,
            report=self._report,
            on_rejects=self._log_rejects if "rejects" in names else None,
            observe=lambda outcome: observe(self.core.name, outcome),
        )
        with warnings.catch_warnings():  # Ray's property reads a deprecated one of its own
            warnings.simplefilter("ignore")
            restarted = ray.get_runtime_context().was_current_actor_reconstructed
        if restarted:
            log.warning("%s restarted; what the previous replica held is counted as lost", role)

    async def _take(self, max_items: int, timeout: float) -> tuple[list[Any], bool]:
        return await self.edges("input").take.remote(max_items, timeout)

    async def _put(self, edge: str, items: list[Candidate]) -> None:
        await self.edges(edge).put_batch.remote(items)

    async def _report(self, delta: Ledger) -> None:
        await self.edges("ledger").submit.remote(self.reporter.add(delta))

    def _log_rejects(self, rejects: list[tuple[Candidate, str]]) -> None:
        self.edges("rejects").call.remote("log_rejects", rejects)  # fire and forget: a log, not the books

    async def run(self) -> None:
        """Runs until the input ends (or the stage turns fatal)."""
        await self.loop.run()

    def stats(self) -> StageStats:
        stats = self.loop.stats(self.role, self.incarnation)
        stats.report = self.reporter.last
        return stats

    async def call(self, method: str, *args: Any) -> Any:
        """One of the core's own endpoints (`core.endpoints`), e.g. the writer's `close`."""
        if method not in getattr(self.core, "endpoints", ()):
            raise AttributeError(f"stage {self.core.name!r} has no endpoint {method!r}")
        result = getattr(self.core, method)(*args)
        return await result if hasattr(result, "__await__") else result
