"""The loop an instructor actor runs: generate under a quota, answer what the novelty stage admitted.

Ray-free: the queues are injected as async callables, so tests drive it with plain `BatchQueue`s.
The driver steers both kinds of call with caps on running totals (`steer`): a generating call
starts only while this replica's candidates generated, plus what its running calls will bring, stay
under the generating cap; an answer call starts only while the answer calls started stay under the
answer cap. Caps on running totals, not "how many more", are what make a late message harmless: a
call that finished between the driver's snapshot and the cap's arrival is still counted, so a paid
teacher is asked for what the target needs and not for what was already on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from instructflow.actors.core.feed import FeedStats, RowReader, SourceFeed
from instructflow.actors.core.ledger import Ledger
from instructflow.actors.core.ledger import Report as RunningTotal
from instructflow.actors.core.queue import Deliveries, QueueClosed
from instructflow.instructors.base import Instructor
from instructflow.instructors.derived import REJECTED
from instructflow.instructors.record import Candidate
from instructflow.instructors.rejection import CandidateRejected
from instructflow.instructors.teacher.api import (
    GENERATING,
    BudgetExhausted,
    FatalTeacherError,
    RequestFailed,
    Teacher,
    TeacherStats,
)
from instructflow.instructors.truncation import TRUNCATED, ReplyTruncated

log = logging.getLogger(__name__)

# Failures that say the teacher cannot be reached or cannot serve, as opposed to one bad request.
UNREACHABLE_REASONS = frozenset({"connection", "server_error", "timeout", "rate_limited"})

Emit = Callable[[list[Candidate]], Awaitable[Any]]
Take = Callable[[int, float], Awaitable[tuple[list[Candidate], bool]]]  # -> (items, ended)
Report = Callable[[Ledger], Awaitable[Any]]


@dataclass
class ProducerStats:
    """One instructor replica's state, as the driver reads it."""

    category: str
    held: int  # candidates generated and not yet emitted, plus those in answer calls
    calls_in_flight: int  # generating calls made and not yet answered
    answering: int  # answer calls in flight
    quota: int  # candidates this replica may still generate under its cap
    failures: dict[str, int]  # failed teacher calls by reason
    outcome: str | None  # why the loops ended early ("budget", "fatal: ...")
    generating: bool
    generated_total: int = 0  # candidates this replica generated since it started (running total)
    unreported: int = 0  # of which not yet in the books (a report on its way)
    answers_started: int = 0  # answer calls this replica started since it started (running total)
    answers_allowed: int = 0  # answer calls it may still start under its cap
    teacher: TeacherStats | None = None  # the teacher client's stats
    report: RunningTotal | None = None  # the replica's newest running total (the driver makes sure the books have it)
    feed: FeedStats | None = None  # a second-round category's source rows (`core.feed`)


class Producer:
    """Runs `concurrency` generating and answering loops that share `concurrency` teacher slots."""

    def __init__(
        self,
        instructor: Instructor,
        teacher: Teacher,
        *,
        emit_novelty: Emit,
        take_answers: Take,
        emit_judge: Emit,
        report: Report,
        concurrency: int,
        on_event: Callable[[str, int, str, str | None], None] | None = None,
        max_failures_in_a_row: int = 0,
        log_rejects: Callable[[list[tuple[Candidate, str]]], Any] | None = None,
        feed: tuple[SourceFeed, RowReader] | None = None,
    ) -> None:
        """`feed`: for a second-round category, its source feed and the reader of the committed
        rows; a generating call then starts only once the feed has handed over a source row."""
        self.instructor = instructor
        self.feed, self.read_rows = feed if feed is not None else (None, None)
        self.log_rejects = log_rejects  # candidates this stage rejects, for the rejects log
        self.teacher = teacher
        self.emit_novelty = emit_novelty
        self.take_answers = take_answers
        self.emit_judge = emit_judge
        self.report = report
        self.concurrency = concurrency
        # (kind, count, stage, reason) -> metrics; a no-op outside Ray
        self.on_event = on_event or (lambda kind, count, stage, reason: None)
        self.max_failures_in_a_row = max_failures_in_a_row  # 0: never give up
        self.failed_in_a_row = 0
        self.slots = asyncio.Semaphore(concurrency)
        self._emitting = asyncio.Semaphore(concurrency)
        self._emits: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()  # set whenever the quota or the calls in flight change
        # Caps on running totals, set by the driver (`steer`); nothing starts before the first one.
        self.generate_cap = 0
        self.answer_cap = 0
        self.generated_total = 0
        self.unreported = 0
        self.answers_started = 0
        self.calls_in_flight = 0
        self.stopping = False
        self.generating = True
        self.answering_open = True  # False once the judge queue refuses answers (drain)
        self.outcome: str | None = None  # "budget" or "fatal: ..." when the loops ended early
        self.held = 0  # candidates generated and not yet emitted, plus those in answer calls
        self.answering = 0
        self.failures: Counter[str] = Counter()  # failed teacher calls by reason
        self.dead_letters: list[dict[str, Any]] = []
        # Ids of admitted instructions whose answer made no row: the shell hands them to the novelty
        # gate (`Gate.release`), so that they block no later near-duplicate.
        self.unanswered: list[str] = []
        self.deliveries = Deliveries()

    @property
    def batch_size(self) -> int:
        return self.instructor.params.batch_size

    @property
    def quota(self) -> int:
        """Candidates this replica may still generate: its cap less what it generated and what its
        running calls will bring."""
        return max(0, self.generate_cap - self.generated_total - self.calls_in_flight * self.batch_size)

    def steer(self, generate_cap: int, answer_cap: int) -> None:
        """Sets the caps on this replica's running totals of candidates generated and answer calls
        started (the driver computes them from a snapshot of `stats`)."""
        self.generate_cap = generate_cap
        self.answer_cap = answer_cap
        self._wake.set()

    def stop_generating(self) -> None:
        """Drain: no new teacher calls of either kind; calls in flight finish and are passed on."""
        self.generating = False
        self.answering_open = False

    def stop(self) -> None:
        self.stopping = True
        self.generating = False
        self._wake.set()

    async def run(self) -> None:
        """Runs every loop until stopped, the answer queue closes, or the budget or a fatal error ends it."""
        loops = [self._generate_loop() for _ in range(self.concurrency)]
        loops.append(self._answer_loop())
        if self.feed is not None:
            loops.append(self._feed_loop())
        await asyncio.gather(*loops)
        if self._emits:
            await asyncio.gather(*self._emits)

    def _may_generate(self) -> bool:
        return self.generating and not self.stopping and self.quota > 0

    async def _generate_loop(self) -> None:
        GENERATING.set(True)  # in this loop's own task context: its teacher calls are generating ones
        while self.generating and not self.stopping:
            # A second-round category's call needs a source row, handed over right before it starts.
            if not self._may_generate() or (self.feed is not None and not self.feed.reserve()):
                self._wake.clear()
                # Woken by set_quota or a finished call; the timeout re-checks `generating`.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.5)
                continue
            self.calls_in_flight += 1
            try:
                async with self.slots:
                    cands = await self._call("generate", self.instructor.generate(self.teacher))
            finally:
                self.calls_in_flight -= 1
                self._wake.set()
            if cands is None:
                continue
            if not cands:  # the teacher answered, but in no form the instructor can read
                self.failures["unparseable"] += 1
                self._dead_letter("generate", "unparseable", "the reply held nothing in the expected format", None)
                self.on_event("reject", 1, "parse", "unparseable")
                continue
            self.generated_total += len(cands)
            self.unreported += len(cands)
            # The next call starts while these are recorded and queued; at most `concurrency`
            # emits wait at once, so a full novelty queue still holds generation back.
            await self._emitting.acquire()
            self.held += len(cands)
            task = asyncio.create_task(self._emit(cands))
            self._emits.add(task)
            task.add_done_callback(self._emits.discard)

    async def _feed_loop(self) -> None:
        """Reads newly committed source rows every `poll_s` (off the event loop) and wakes the
        generating loops when rows came on hand."""
        assert self.feed is not None and self.read_rows is not None
        while self.generating and not self.stopping:
            try:
                rows = await asyncio.to_thread(self.read_rows)
                self.feed.error = None
            except Exception as exc:  # noqa: BLE001 - an unreadable output now may be readable later
                self.feed.failed(exc)
                rows = []
            if self.feed.admit(rows):
                self._wake.set()
            await asyncio.sleep(self.feed.poll_s)

    async def _emit(self, cands: list[Candidate]) -> None:
        reported = False
        # Candidates the instructor rejected itself (e.g. the teacher declined the source row).
        passing = [c for c in cands if REJECTED not in c.meta]
        try:
            delta = Ledger()
            delta.generate(cands)
            try:
                await self.report(delta)  # counted as generated before they can reach anyone
            finally:
                self.unreported -= len(cands)
                reported = True
            for cand in cands:
                if REJECTED in cand.meta:
                    await self._reject(cand, cand.meta[REJECTED])
            if passing:
                await self.emit_novelty(passing)
        except QueueClosed as exc:
            await self._drop(passing[exc.delivered :] if exc.rest is None else exc.rest, exc.reason)
            self.generating = False  # the novelty queue is closed for good
        finally:
            if not reported:
                self.unreported -= len(cands)
            self.held -= len(cands)
            self._emitting.release()

    async def _answer_loop(self) -> None:
        """One taker for the answer queue: it takes as many admitted candidates as there are free
        answering tasks (at most `concurrency`), so an idle queue costs two polls a second, not
        two per slot, and a busy one is emptied in batches."""
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not self.stopping and self.answering_open:
                free = self.concurrency - len(tasks)
                if free <= 0:
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                allowed = self.answer_cap - self.answers_started
                if allowed <= 0:
                    # The answers on their way are expected to meet the target: wait for the
                    # driver to raise the cap (after a rejection) or to retire the category.
                    self._wake.clear()
                    waits = [asyncio.ensure_future(self._wake.wait()), *tasks]
                    done, _ = await asyncio.wait(waits, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                    if waits[0] not in done:
                        waits[0].cancel()
                    continue
                taken, ended = await self.take_answers(min(free, allowed), 0.5)
                if not taken:
                    if ended or not self.generating:
                        break
                    continue
                batch = self.deliveries.fresh(taken)  # a retried put's copies: not answered twice
                for cand in batch:
                    self.held += 1
                    self.answering += 1
                    self.answers_started += 1
                    task = asyncio.create_task(self._answer(cand))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.gather(*tasks)

    async def _answer(self, cand: Candidate) -> None:
        try:
            try:
                async with self.slots:
                    answered = await self._call("respond", self.instructor.respond(cand, self.teacher), cand)
            except ReplyTruncated as exc:  # the answer stopped at max_tokens and was not (fully) continued
                if cand.response is None:  # the cut answer, for whoever reads the rejects log
                    cand.response = exc.text or None
                self._unanswered(cand)
                await self._reject(cand, TRUNCATED)
                return
            except CandidateRejected as exc:  # the answer came back but cannot make a row
                if cand.response is None:
                    cand.response = exc.text or None
                cand.meta["reject_detail"] = exc.detail or None
                self._unanswered(cand)
                await self._reject(cand, exc.reason)
                return
            if answered is None:  # failed for good, or cut off by the budget or a fatal error
                reason = self.outcome.partition(":")[0] if self.outcome else "no_response"
                self.on_event("reject", 1, "generate", reason)
                self._unanswered(cand)
                await self._drop([cand], reason)
                return
            self.on_event("generated", 1, "generated", None)
            try:
                await self.emit_judge([answered])
            except QueueClosed as exc:
                await self._drop([answered][exc.delivered :], exc.reason)
                self.answering_open = False
        finally:
            self.held -= 1
            self.answering -= 1

    async def _reject(self, cand: Candidate, reason: str) -> None:
        """A candidate this stage judged unfit (its answer stayed cut, or its category rejected it with
        `CandidateRejected`): in the books as rejected by the `instructor` stage under `reason`, in the
        rejects log and in the metrics."""
        self.on_event("reject", 1, "generate", reason)
        if self.log_rejects is not None:
            self.log_rejects([(cand, reason)])
        delta = Ledger()
        delta.reject([cand], "instructor", reason)
        await self.report(delta)

    async def _drop(self, cands: list[Candidate], reason: str) -> None:
        delta = Ledger()
        delta.drop(cands, reason)
        await self.report(delta)

    async def _call(self, call: str, work: Awaitable[Any], cand: Candidate | None = None) -> Any:
        """Awaits one instructor call; failures are counted and dead-lettered, never raised."""
        try:
            result = await work
            self.failed_in_a_row = 0
            return result
        except (ReplyTruncated, CandidateRejected):  # the teacher answered: a verdict, not a failure
            self.failed_in_a_row = 0
            raise
        except BudgetExhausted:
            self.outcome = self.outcome or "budget"
            self.stop()
        except FatalTeacherError as exc:
            self.outcome = f"fatal: {exc}"
            self.stop()
        except RequestFailed as exc:
            self.failures[exc.reason] += 1
            self._dead_letter(call, exc.reason, exc.detail, cand)
            self._trip_if_unreachable(exc)
        except Exception as exc:  # a parser or template bug must not kill the category
            log.exception("instructor %s failed in %s", self.instructor.category, call)
            self.failures["instructor_error"] += 1
            self._dead_letter(call, "instructor_error", repr(exc), cand)
        return None

    def _trip_if_unreachable(self, exc: RequestFailed) -> None:
        """Circuit breaker: a teacher that fails every request (down, wrong URL, permanent 5xx)
        would otherwise be retried forever while nothing is produced."""
        if exc.reason not in UNREACHABLE_REASONS:
            return
        self.failed_in_a_row += 1
        if self.max_failures_in_a_row and self.failed_in_a_row >= self.max_failures_in_a_row:
            self.outcome = (
                f"fatal: the teacher failed {self.failed_in_a_row} requests in a row, each after all its "
                f"retries (last: {exc.reason}: {exc.detail[:200]}); check teacher.base_url and the server"
            )
            self.stop()

    def _dead_letter(self, call: str, reason: str, detail: str, cand: Candidate | None) -> None:
        self.dead_letters.append({
            "category": self.instructor.category,
            "call": call,
            "reason": reason,
            "detail": detail[:500],
            "instruction": cand.instruction if cand else None,
            "at": time.time(),
        })

    def _unanswered(self, cand: Candidate) -> None:
        if cand.source_id is None:  # second-round rows never enter the index
            self.unanswered.append(cand.id)

    def take_unanswered(self) -> list[str]:
        """Ids of admitted instructions that made no row since the last call (see `unanswered`)."""
        taken, self.unanswered = self.unanswered, []
        return taken

    def take_dead_letters(self) -> list[dict[str, Any]]:
        taken, self.dead_letters = self.dead_letters, []
        return taken

    def stats(self) -> ProducerStats:
        return ProducerStats(
            category=self.instructor.category,
            held=self.held,
            calls_in_flight=self.calls_in_flight,
            answering=self.answering,
            quota=self.quota,
            failures=dict(self.failures),
            outcome=self.outcome,
            generating=self.generating,
            generated_total=self.generated_total,
            unreported=self.unreported,
            answers_started=self.answers_started,
            answers_allowed=max(0, self.answer_cap - self.answers_started),
            feed=self.feed.stats() if self.feed is not None else None,
        )
