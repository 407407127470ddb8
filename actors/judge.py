"""Judge actors: pull answered candidates, apply the judge chain, pass accepted rows to the writer."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import ray

from instructflow.actors import metrics
from instructflow.actors.core.judge import JudgeChain, Outcome
from instructflow.actors.core.queue import QueueClosed
from instructflow.instructors.record import Candidate
from instructflow.instructors.teacher.api import FatalTeacherError, TeacherError


@ray.remote(num_cpus=0.1, max_restarts=-1, max_task_retries=-1)
class JudgeActor:
    """One member of the judge pool; LLM judging runs several candidates concurrently."""

    def __init__(self, config: Any, base_url: str | None, queues: dict[str, Any], writer: Any) -> None:
        self.chain = JudgeChain(config.judge.rules, config.judge.llm, config.prompts_path)
        self.teacher = None
        if config.judge.llm.enabled and base_url:
            from instructflow.actors.teacher import make_teacher

            self.teacher = make_teacher(config.teacher, base_url, scope=config.run_id)
        self.keep_rejects = config.writer.keep_rejects
        self.queues = queues
        self.writer = writer
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.held = 0
        self.stopping = False
        self.fatal: str | None = None

    async def run(self) -> None:
        """Runs until the judge queue is closed and drained."""
        while not self.stopping:
            batch: list[Candidate] = await self.queues["judge"].get_batch.remote(64, 0.5)
            if not batch:
                if (await self.queues["judge"].stats.remote())["closed"]:
                    break
                continue
            self.held += len(batch)
            try:
                outcomes = await asyncio.gather(*[self._judge(c) for c in batch])
                await self._forward(batch, outcomes)
            except QueueClosed:
                break
            finally:
                self.held -= len(batch)

    async def _judge(self, cand: Candidate) -> Outcome:
        try:
            return await self.chain.judge(cand, self.teacher)
        except FatalTeacherError as exc:
            self.fatal = str(exc)
            self.stopping = True
            return Outcome(False, "teacher_fatal")
        except TeacherError as exc:
            return Outcome(False, f"judge_{getattr(exc, 'reason', 'failed')}")

    async def _forward(self, batch: list[Candidate], outcomes: list[Outcome]) -> None:
        keep, rejects = [], []
        for cand, outcome in zip(batch, outcomes, strict=True):
            if outcome.accepted:
                keep.append(cand)
                self.accepted[cand.category] += 1
                metrics.inc("candidates", 1, category=cand.category, stage="judged")
            else:
                rejects.append((cand, outcome.reason or "rejected"))
                self.rejected[cand.category] += 1
                self.reasons[outcome.reason or "rejected"] += 1
                metrics.inc("rejects", 1, category=cand.category, stage="judge", reason=outcome.reason or "rejected")
        if rejects and self.keep_rejects:
            self.writer.reject.remote(rejects)
        if keep:
            await self.queues["writer"].put_batch.remote(keep)

    def stop(self) -> None:
        self.stopping = True

    def stats(self) -> dict[str, Any]:
        return {
            "held": self.held,
            "accepted": dict(self.accepted),
            "rejected": dict(self.rejected),
            "reasons": dict(self.reasons),
            "fatal": self.fatal,
            "teacher": self.teacher.stats() if self.teacher else None,
        }
