"""The instructor actor: one replica of one category, a thin shell around `core.producer.Producer`."""

from __future__ import annotations

import random
import uuid
from typing import Any

import ray

from instructflow.actors import metrics
from instructflow.actors.core.coalesce import Coalescer
from instructflow.actors.core.ledger import Ledger, Report, Reporter, members
from instructflow.actors.core.producer import Producer, ProducerStats
from instructflow.actors.core.queue import QueueClosed
from instructflow.actors.novelty import pack
from instructflow.config import Config
from instructflow.instructors.characters import Card
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import get_instructor


@ray.remote(num_cpus=0.1, max_restarts=-1, max_task_retries=-1)
class InstructorActor:
    """Generates candidates for `category` and answers the ones the novelty stage admitted.

    Restarting is safe: the actor keeps no state that is not rebuilt from the config, and the driver
    re-sends its quota on the next tick; candidates it held are accounted as dropped.
    """

    def __init__(
        self, config: Config, category: str, replica: int, base_url: str, topics: list[str], names: dict[str, str],
        output_uri: str | None = None, cards: list[Card] | None = None,
    ) -> None:
        """`names`: actor names of the ``novelty``, ``judge`` and own ``answer`` queues, the
        ``ledger``, the novelty ``gate`` and the ``writer`` (found by name, so that a restart can
        always rebuild).
        `output_uri`: the run's output location (batch mode records its batches there).
        `cards`: the character cards the category may play (loaded once by the driver)."""
        from instructflow.actors.teacher import make_teacher

        params = config.categories[category]
        rng = random.Random(f"{config.run.seed}:{category}:{replica}")
        instructor = get_instructor(category)(
            params, topics=topics, avoid_topics=config.topics.avoid, rng=rng, prompts_dir=config.prompts_path,
            pii=config.pii, cards=cards,
        )
        self.category = category
        self.writer = ray.get_actor(names["writer"])
        self.gate = ray.get_actor(names["gate"])
        self.teacher = make_teacher(config.teacher, base_url, scope=config.run_id, output_uri=output_uri)
        novelty, answers, judge, ledger = (ray.get_actor(names[k]) for k in ("novelty", "answer", "judge", "ledger"))

        # Concurrent calls' puts share round trips (one in flight per queue); each caller still
        # waits for its own items to be in the queue, so a full queue holds its producer back.
        to_novelty: Coalescer[Any] = Coalescer(lambda items: novelty.put_batch.remote(items))
        to_judge: Coalescer[Candidate] = Coalescer(lambda items: judge.put_batch.remote(items))
        # Each report carries the replica's running total: the newest of a batch says it all.
        reporter = self.reporter = Reporter(f"instructor:{category}:{replica}/{uuid.uuid4().hex[:12]}")
        to_ledger: Coalescer[Report] = Coalescer(lambda reports: ledger.submit.remote(reports[-1]))

        async def emit_novelty(cands: list[Candidate]) -> None:
            metrics.inc("candidates", len(cands), category=category, stage="parsed")
            items = pack(cands)
            try:
                await to_novelty.submit(items)
            except QueueClosed as exc:
                # A group travels as one item: say which candidates did not go in.
                refused = QueueClosed(exc.reason, 0)
                refused.rest = members(items[exc.delivered :])
                raise refused from None

        async def take_answers(max_items: int, timeout: float) -> tuple[list[Candidate], bool]:
            return await answers.take.remote(max_items, timeout)

        async def report(delta: Ledger) -> None:
            await to_ledger.submit([reporter.add(delta)])

        async def emit_judge(cands: list[Candidate]) -> None:
            await to_judge.submit(cands)

        def on_event(kind: str, count: int, stage: str, reason: str | None) -> None:
            if kind == "reject":
                metrics.inc("rejects", count, category=category, stage=stage, reason=reason)
            else:
                metrics.inc("candidates", count, category=category, stage=stage)

        self.producer = Producer(
            instructor,
            self.teacher,
            emit_novelty=emit_novelty,
            take_answers=take_answers,
            emit_judge=emit_judge,
            report=report,
            concurrency=params.concurrency,
            on_event=on_event,
            max_failures_in_a_row=config.teacher.max_failures_in_a_row,
            # fire and forget, as the stages do: a log, not the books
            log_rejects=lambda rejects: self.writer.call.remote("log_rejects", rejects),
            feed=source_feed(instructor, replica, params.replicas, output_uri),
        )

    async def run(self) -> str | None:
        """Runs until stopped; returns why it ended early ("budget", "fatal: ...") or None."""
        await self.producer.run()
        letters = self.producer.take_dead_letters()
        if letters:
            # Awaited: the driver closes the writer once this returns, and letters arriving after
            # the close would never be written.
            await self.writer.call.remote("log_dead_letters", letters)
        keys = self.producer.take_unanswered()
        if keys:  # awaited too: the driver's last look at the gate comes after this returns
            await self.gate.release.remote(keys)
        return self.producer.outcome

    def steer(self, generate_cap: int, answer_cap: int) -> None:
        self.producer.steer(generate_cap, answer_cap)

    def stop_generating(self) -> None:
        self.producer.stop_generating()

    def stop(self) -> None:
        self.producer.stop()

    def _ship_dead_letters(self) -> None:
        letters = self.producer.take_dead_letters()
        if letters:
            self.writer.call.remote("log_dead_letters", letters)

    def _release_unanswered(self) -> None:
        # Fire and forget, batched per stats tick: a lost release costs a little novelty, not a row.
        keys = self.producer.take_unanswered()
        if keys:
            self.gate.release.remote(keys)

    def stats(self) -> ProducerStats:
        self._ship_dead_letters()
        self._release_unanswered()
        stats = self.producer.stats()
        stats.teacher = self.teacher.stats()
        stats.report = self.reporter.last
        return stats


def source_feed(instructor: Any, replica: int, replicas: int, output_uri: str | None) -> tuple[Any, Any] | None:
    """The feed of committed rows over the run's output (`core.feed`) of a category that reads them:
    a second-round category's sources, or the `references` (character cards) a category plays; None
    for the others."""
    from instructflow.actors.core.feed import RowReader, SourceFeed
    from instructflow.actors.core.storage import open_store

    if not instructor.sources and not instructor.references:
        return None
    if output_uri is None:
        raise ValueError(f"{instructor.category} reads committed rows and needs the run's output location")
    feed = SourceFeed(instructor, replica, replicas)
    return feed, RowReader(open_store(output_uri), feed.categories)
