"""Ray-free bookkeeping for the driver: per-category progress from the actors' stats, and the
generation quotas that keep a paid teacher from being asked for much more than the targets need."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

YIELD_PRIOR = 4


@dataclass
class Progress:
    """One snapshot of the whole pipeline, summed over actors."""

    targets: dict[str, int]
    accepted: Counter[str] = field(default_factory=Counter)  # committed + pending in the writer
    committed: Counter[str] = field(default_factory=Counter)
    generated: Counter[str] = field(default_factory=Counter)
    resolved: Counter[str] = field(default_factory=Counter)  # finally rejected, dropped or accepted
    surplus: Counter[str] = field(default_factory=Counter)  # skipped by the writer (over target, repeated id)
    rejects: Counter[str] = field(default_factory=Counter)  # by reason, every stage
    failures: Counter[str] = field(default_factory=Counter)  # failed teacher calls by reason
    requests: Counter[str] = field(default_factory=Counter)  # teacher attempts by status class, retries included
    retries: int = 0  # failed attempts that were tried again (429s, 5xx, hangs, garbled replies, ...)
    replies: int = 0  # attempts that brought back a usable reply
    queue_depths: dict[str, int] = field(default_factory=dict)
    held: int = 0  # items inside actors between a queue get and the next put
    held_finishing: int = 0  # of `held`: in teacher calls already made, in judges and in the writer
    prompt_tokens: int = 0
    completion_tokens: int = 0
    outcomes: list[str] = field(default_factory=list)  # why instructors ended early
    vectors: int = 0
    # Set by the driver once the pipeline has looked empty for a while: candidates still counted
    # as in flight were lost (an actor restarted while holding them) and must be made up for.
    assume_lost: bool = False

    @property
    def pipeline_items(self) -> int:
        """Candidates visible in queues and inside actors (not those in transit between them).

        Answers still queued for a category that met its target are left out: its instructors
        have stopped, so they never move, and counting them would keep the pipeline from ever
        looking empty (and candidates lost to a restart from ever being made up for).
        """
        parked = sum(
            depth for name, depth in self.queue_depths.items()
            if name.startswith("answer:") and self.done(name.removeprefix("answer:"))
        )
        return sum(self.queue_depths.values()) - parked + self.held

    @property
    def finishing_items(self) -> int:
        """Candidates that still reach the writer once no new teacher call starts (a drain, a spent
        budget): in calls already made, queued for or inside the judges, queued for or inside the
        writer. Instructions waiting for novelty or an answer are parked and not counted."""
        return self.queue_depths.get("judge", 0) + self.queue_depths.get("writer", 0) + self.held_finishing

    def in_flight(self, category: str) -> int:
        """Generated candidates of `category` not yet accepted or finally rejected."""
        raw = max(0, self.generated[category] - self.resolved[category])
        return min(raw, self.pipeline_items) if self.assume_lost else raw

    def yield_rate(self, category: str) -> float:
        """Share of generated candidates that end up accepted (0.05..1).

        Rows the writer skipped as surplus are not a loss of quality and do not count; a prior of a
        few accepted rows keeps the first rejections from looking like a collapse in yield.
        """
        judged = self.resolved[category] - self.surplus[category]
        rate = (self.accepted[category] + YIELD_PRIOR) / (judged + YIELD_PRIOR)
        return min(1.0, max(0.05, rate))

    def done(self, category: str) -> bool:
        return self.committed[category] >= self.targets[category]

    def all_done(self) -> bool:
        return all(self.done(c) for c in self.targets)


def quotas(progress: Progress, replicas: dict[str, int]) -> dict[str, int]:
    """Candidates each replica of a category may still generate.

    What is in flight will yield about `in_flight * yield` accepted rows; the rest of the target is
    divided by the observed yield so that losses to duplicates and judges are made up in one round.
    """
    result = {}
    for category, target in progress.targets.items():
        rate = progress.yield_rate(category)
        expected = progress.accepted[category] + progress.in_flight(category) * rate
        missing = max(0.0, target - expected)
        per_replica = math.ceil(missing / rate / max(1, replicas.get(category, 1)))
        result[category] = per_replica
    return result


# Failed calls only the instructor sees (the HTTP request itself succeeded): the reply could not be
# parsed, or the instructor's own code raised. Other failure reasons come from the teacher client.
PRODUCER_FAILURES = ("unparseable", "instructor_error")


def _add_usage(p: Progress, teacher: dict[str, Any] | None) -> None:
    teacher = teacher or {}
    usage = teacher.get("usage") or {}
    p.prompt_tokens += usage.get("prompt_tokens", 0)
    p.completion_tokens += usage.get("completion_tokens", 0)
    p.failures.update(teacher.get("failures", {}))
    p.requests.update(teacher.get("requests", {}))
    p.retries += teacher.get("retries", 0)
    p.replies += teacher.get("replies", 0)


def collect(
    targets: dict[str, int],
    writer: dict[str, Any],
    instructors: list[dict[str, Any]],
    workers: list[dict[str, Any]],
    judges: list[dict[str, Any]],
    queues: list[dict[str, Any]],
) -> Progress:
    """Sums the stats dictionaries the actors return into one `Progress`."""
    p = Progress(targets=dict(targets))
    p.accepted.update(writer.get("accepted", {}))
    p.committed.update(writer.get("committed", {}))
    p.resolved.update(writer.get("accepted", {}))
    p.resolved.update(writer.get("skipped_by_category", {}))
    p.surplus.update(writer.get("skipped_by_category", {}))
    p.rejects.update({f"writer:{k}": v for k, v in writer.get("skipped", {}).items()})
    for s in instructors:
        cat = s["category"]
        p.generated[cat] += s["generated"]
        p.resolved[cat] += sum(s["dropped"].values())
        p.rejects.update({f"answer:{k}": v for k, v in s["dropped"].items()})
        p.held += s["held"]
        p.held_finishing += s["held"]  # candidates in teacher calls already made
        _add_usage(p, s.get("teacher"))
        p.failures.update({k: v for k, v in s.get("failures", {}).items() if k in PRODUCER_FAILURES})
        if s.get("outcome"):
            p.outcomes.append(s["outcome"])
    for s in workers:
        p.resolved.update(s["rejected"])
        p.rejects.update({f"novelty:{k}": v for k, v in s["reasons"].items()})
        p.held += s["held"]
    for s in judges:
        p.resolved.update(s["rejected"])
        p.rejects.update({f"judge:{k}": v for k, v in s["reasons"].items()})
        p.held += s["held"]
        p.held_finishing += s["held"]
        _add_usage(p, s.get("teacher"))
        if s.get("fatal"):
            p.outcomes.append(f"fatal: {s['fatal']}")
    for q in queues:
        p.queue_depths[q["name"]] = q["depth"]
    p.held += writer.get("held", 0)
    p.held_finishing += writer.get("held", 0)
    return p
