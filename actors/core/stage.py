"""The stage kernel: one Ray-free interface every pipeline stage implements, and one loop that runs it.

A stage writes one verb, `process(batch)`, and says what became of every candidate in the batch:
passed on along a named edge, rejected (with a reason), dropped (with a reason) or accepted. The
loop owns everything else, written once for every stage:

- taking batches from the input (waiting while it is quiet, ending when it is closed and empty),
  with up to `concurrency` batches in process at once (the next one is taken ahead only if it is
  already waiting, so a new arrival goes to an idle replica rather than a busy one);
- the candidates held between a take and the last put, per category;
- recording the batch's outcome in the run's books *before* passing anything on (see
  `core.ledger`), so a replica that dies mid-batch leaves its batch counted once: as decided, or
  as lost;
- putting outputs on their edges; an edge that is closed (its category is done, the run is
  draining) drops what was meant for it with the edge's reason instead of blocking the stage;
- rejected candidates to the rejects log, and metrics through one `observe` callback;
- a fatal error (`stage.fatal`) ending the loop, and idle ticks (`stage.tick`) for timed work.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from instructflow.actors.core.ledger import Ledger, members
from instructflow.actors.core.ledger import Report as RunningTotal
from instructflow.actors.core.queue import Deliveries, QueueClosed
from instructflow.instructors.record import Candidate

Take = Callable[[int, float], Awaitable[tuple[list[Any], bool]]]  # (max_items, timeout) -> (items, ended)
Put = Callable[[str, list[Candidate]], Awaitable[Any]]  # (edge, candidates); raises QueueClosed
Report = Callable[[Ledger], Awaitable[Any]]


class StageBug(RuntimeError):
    """A stage's outcome does not account for its batch exactly (a programming error)."""


@dataclass
class Outcome:
    """What a stage did with one batch; every candidate of the batch appears in exactly one place."""

    outputs: dict[str, list[Candidate]] = field(default_factory=dict)  # edge -> candidates
    rejected: list[tuple[Candidate, str]] = field(default_factory=list)  # (candidate, reason)
    dropped: list[tuple[Candidate, str]] = field(default_factory=list)
    accepted: list[Candidate] = field(default_factory=list)
    scrubbed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (category, entity): PII found

    def send(self, edge: str, cand: Candidate) -> None:
        self.outputs.setdefault(edge, []).append(cand)

    def check(self, batch: list[Candidate]) -> None:
        placed = [c for cands in self.outputs.values() for c in cands]
        placed += [c for c, _ in self.rejected] + [c for c, _ in self.dropped] + self.accepted
        if sorted(map(id, placed)) != sorted(map(id, batch)):
            raise StageBug(f"outcome places {len(placed)} candidates for a batch of {len(batch)}")

    def ledger(self, stage: str, with_accepted: bool = True) -> Ledger:
        delta = Ledger()
        if with_accepted:
            delta.accept(self.accepted)
        for cand, reason in self.rejected:
            delta.reject([cand], stage, reason)
        for cand, reason in self.dropped:
            delta.drop([cand], reason)
        for cands in self.outputs.values():
            delta.pass_on(cands, stage)
        delta.scrubbed.update(self.scrubbed)
        return delta


class Stage(ABC):
    """A pipeline stage's Ray-free core. Subclasses set `name` and write `process`."""

    name: ClassVar[str]
    batch_size: int = 64  # candidates taken at once
    concurrency: int = 1  # batches in process at once
    fatal: str | None = None  # set to end the run (e.g. the teacher rejected the API key)
    # False where acceptance is proven elsewhere: the writer's rows count as accepted once they are
    # in the manifest (or pending in a live writer), not when a writer that may die took them.
    records_accepted: bool = True

    @abstractmethod
    async def process(self, batch: list[Candidate]) -> Outcome:
        """Decides what becomes of every candidate in `batch`."""

    async def act(self, outcome: Outcome) -> None:  # noqa: B027 - optional hook
        """Side effects that must follow the recording of `outcome` (the writer adds its rows)."""

    async def tick(self) -> None:  # noqa: B027 - optional hook
        """Called when the input is quiet (timed work, e.g. the writer's interval flush)."""

    async def finish(self) -> None:  # noqa: B027 - optional hook
        """Called once the input has ended and every batch is done."""

    def detail(self) -> Any:
        """The stage's own typed stats (or None)."""
        return None


@dataclass
class StageStats:
    """One stage replica's state, as the driver reads it."""

    role: str  # e.g. "judge:0"
    incarnation: str  # new on every (re)start of the replica
    held: dict[str, int]  # candidates taken and not yet passed on, per category
    batches: int
    busy_s: float
    ended: bool
    fatal: str | None
    detail: Any = None
    report: RunningTotal | None = None  # the replica's newest running total (the driver makes sure the books have it)


class StageLoop:
    """Runs one `Stage` between an input and its output edges (see the module docstring)."""

    def __init__(
        self,
        stage: Stage,
        *,
        take: Take,
        put: Put,
        report: Report,
        on_rejects: Callable[[list[tuple[Candidate, str]]], Any] | None = None,
        observe: Callable[[Outcome], Any] | None = None,
        idle_timeout: float = 0.5,
    ) -> None:
        self.stage = stage
        self._take, self._put, self._report = take, put, report
        self._on_rejects = on_rejects
        self._observe = observe
        self.idle_timeout = idle_timeout
        self.held: Counter[str] = Counter()
        self.deliveries = Deliveries()
        self.batches = 0
        self.busy_s = 0.0
        self.ended = False

    async def run(self) -> None:
        """Until the input ends and every batch is done, or the stage turns fatal."""
        stage = self.stage
        running: set[asyncio.Task[None]] = set()
        taking: asyncio.Task[tuple[list[Any], bool]] | None = None
        looked_ahead = False  # a take-ahead found nothing: wait for a batch to finish first
        ended = False
        try:
            while (not ended or running) and stage.fatal is None:
                if taking is None and not ended and len(running) < stage.concurrency and not looked_ahead:
                    taking = asyncio.create_task(self._take_batch(0 if running else self.idle_timeout))
                waiting = running | ({taking} if taking else set())
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done & running:
                    running.discard(task)
                    looked_ahead = False
                    task.result()  # a stage's own error ends the loop (and fails the run)
                if taking in done:
                    batch, ended = taking.result()
                    taking = None
                    if batch:
                        running.add(asyncio.create_task(self._handle(batch)))
                    elif running:
                        looked_ahead = True
                    elif not ended:
                        await stage.tick()
            if stage.fatal is None:
                await stage.finish()
        finally:
            for task in [*running, *([taking] if taking else [])]:
                task.cancel()
            if taking is not None and taking.done() and not taking.cancelled() and taking.exception() is None:
                batch, _ = taking.result()  # taken, never started: released (the replica ends anyway)
                self.held.subtract(c.category for c in batch)
            self.ended = True

    async def _take_batch(self, timeout: float) -> tuple[list[Candidate], bool]:
        items, ended = await self._take(self.stage.batch_size, timeout)
        batch = self.deliveries.fresh(members(items))  # a retried put's copies are passed over
        # Held from the moment they left the queue: a replica that dies before it starts on them
        # holds them too.
        self.held.update(c.category for c in batch)
        return batch, ended

    async def _handle(self, batch: list[Candidate]) -> None:
        started = time.monotonic()
        try:
            outcome = await self.stage.process(batch)
            outcome.check(batch)
            await self._report(outcome.ledger(self.stage.name, self.stage.records_accepted))  # before passing on
            await self.stage.act(outcome)
            if outcome.rejected and self._on_rejects is not None:
                self._on_rejects(outcome.rejected)
            if self._observe is not None:
                self._observe(outcome)
            for edge, cands in outcome.outputs.items():
                await self._send(edge, cands)
            self.batches += 1
        finally:
            self.held.subtract(c.category for c in batch)
            self.busy_s += time.monotonic() - started

    async def _send(self, edge: str, cands: list[Candidate]) -> None:
        try:
            await self._put(edge, cands)
        except QueueClosed as exc:
            # The edge will take nothing more (its category is done, or the run drains): what was
            # meant for it ends here instead of blocking this stage and everything behind it.
            delta = Ledger()
            delta.drop(cands[exc.delivered :], exc.reason)
            await self._report(delta)

    def stats(self, role: str, incarnation: str) -> StageStats:
        return StageStats(
            role=role,
            incarnation=incarnation,
            held={k: v for k, v in self.held.items() if v > 0},
            batches=self.batches,
            busy_s=round(self.busy_s, 3),
            ended=self.ended,
            fatal=self.stage.fatal,
            detail=self.stage.detail(),
        )
