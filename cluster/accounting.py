"""Ray-free bookkeeping for the driver: progress from the run's books and the actors' typed stats,
the generation quotas that keep a paid teacher from being asked for much more than the targets
need, the estimate of candidates lost to restarts, and the watchdog that ends a run that cannot
progress.

The books (`core.ledger`) are exact: every candidate generated is accepted, rejected or dropped
exactly once, or was lost in an actor that died. While the run goes, what is in flight is known
only approximately (a candidate between two actors shows up in neither), so losses are estimated
from what stays unexplained for several ticks; once the run has drained nothing is in flight and
`lost = generated - accepted - rejected - dropped` exactly.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

from instructflow.actors.core.ledger import GIVEN_UP, SHUTDOWN, TARGET_MET, Ledger

YIELD_PRIOR = 4
# Drops that say nothing about the teacher's yield: the rows were not needed.
SURPLUS_REASONS = frozenset({TARGET_MET, SHUTDOWN, GIVEN_UP, "over_target", "duplicate_id"})
# Consecutive ticks a shortfall must persist before it is believed to be a loss.
LOST_AFTER_TICKS = 4


@dataclass
class Progress:
    """One snapshot of the whole pipeline."""

    targets: dict[str, int]
    books: Ledger = field(default_factory=Ledger)
    committed: Counter[str] = field(default_factory=Counter)  # in committed parts, earlier runs included
    accepted: Counter[str] = field(default_factory=Counter)  # committed + pending in the writer
    visible: Counter[str] = field(default_factory=Counter)  # in queues and inside actors, per category
    queue_depths: dict[str, int] = field(default_factory=dict)
    finishing: int = 0  # candidates that still reach the writer once no new call starts (drain)
    calls_in_flight: Counter[str] = field(default_factory=Counter)
    quota: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # failed teacher calls by reason
    requests: Counter[str] = field(default_factory=Counter)  # teacher attempts by status class
    retries: int = 0
    replies: int = 0
    truncated: int = 0  # replies cut at max_tokens (finish_reason "length"), of `replies`
    batch: Counter[str] = field(default_factory=Counter)  # batch mode: `BatchStats` summed over clients
    prompt_tokens: int = 0
    completion_tokens: int = 0
    outcomes: list[str] = field(default_factory=list)  # why instructors ended early
    vectors: int = 0
    lost: Counter[str] = field(default_factory=Counter)  # estimated while running, exact once drained
    given_up: dict[str, str] = field(default_factory=dict)  # category -> why it was stopped
    inputs_scrubbed: Counter[str] = field(default_factory=Counter)  # PII in topics and seed files, per entity

    @property
    def generated(self) -> Counter[str]:
        return self.books.generated

    @property
    def rejects(self) -> Counter[str]:
        return self.books.by_reason()

    def unexplained(self, category: str) -> int:
        """Generated candidates neither terminal nor visible: in transit, or lost."""
        return self.generated[category] - self.books.terminal(category) - self.visible[category]

    def in_flight(self, category: str) -> int:
        """Generated candidates of `category` that may still be accepted."""
        return max(0, self.generated[category] - self.books.terminal(category) - self.lost[category])

    def yield_rate(self, category: str) -> float:
        """Share of judged candidates that end up accepted (0.05..1); a prior of a few accepted rows
        keeps the first rejections from looking like a collapse in yield."""
        b = self.books
        losses = b.rejected_in(category) + sum(
            n for (c, r), n in b.dropped.items() if c == category and r not in SURPLUS_REASONS
        )
        rate = (b.accepted[category] + YIELD_PRIOR) / (b.accepted[category] + losses + YIELD_PRIOR)
        return min(1.0, max(0.05, rate))

    def done(self, category: str) -> bool:
        return self.committed[category] >= self.targets[category]

    def settled(self, category: str) -> bool:
        """Met its target, or was given up."""
        return self.done(category) or category in self.given_up

    def all_done(self) -> bool:
        return all(self.done(c) for c in self.targets)

    def all_settled(self) -> bool:
        return all(self.settled(c) for c in self.targets)


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
        result[category] = math.ceil(missing / rate / max(1, replicas.get(category, 1)))
    return result


class LossEstimator:
    """Per category, the shortfall that persisted over the last few ticks: a candidate in transit
    is visible again a moment later, a lost one never is."""

    def __init__(self, ticks: int = LOST_AFTER_TICKS) -> None:
        self.history: dict[str, deque[int]] = {}
        self.ticks = ticks

    def update(self, progress: Progress) -> None:
        for cat in progress.targets:
            h = self.history.setdefault(cat, deque(maxlen=self.ticks))
            h.append(progress.unexplained(cat))
            progress.lost[cat] = max(0, min(h)) if len(h) == self.ticks else 0


def settle_lost(progress: Progress) -> None:
    """After the drain nothing is in flight: what is not terminal was lost."""
    for cat in progress.targets:
        progress.lost[cat] = max(0, progress.generated[cat] - progress.books.terminal(cat))


@dataclass
class _Seen:
    signature: tuple[int, int]
    since: float


class Watchdog:
    """Ends categories that cannot reach their target, so that a run always ends by itself.

    - **No progress**: nothing of the category moved (no candidate generated, none decided) for
      `stall_timeout_s` while its target is unmet.
    - **Novelty saturated**: of the last `window` candidates the novelty stage decided, fewer than
      `min_novel_share` were novel: the teacher keeps repeating itself and every further row would
      cost many paid calls.
    """

    def __init__(self, stall_timeout_s: float, window: int, min_novel_share: float) -> None:
        self.stall_timeout_s = stall_timeout_s
        self.window = window
        self.min_novel_share = min_novel_share
        self.seen: dict[str, _Seen] = {}
        self.novelty: dict[str, deque[tuple[int, int]]] = {}  # (decided, novel) per tick

    def check(self, progress: Progress, now: float) -> dict[str, str]:
        """Categories to give up now, with the reason."""
        verdicts = {}
        for cat in progress.targets:
            if progress.settled(cat):
                continue
            reason = self._stalled(progress, cat, now) or self._saturated(progress, cat)
            if reason:
                verdicts[cat] = f"{cat}: {reason}"
        return verdicts

    def _stalled(self, p: Progress, cat: str, now: float) -> str | None:
        signature = (p.generated[cat], p.books.terminal(cat))
        seen = self.seen.get(cat)
        if seen is None or seen.signature != signature:
            self.seen[cat] = _Seen(signature, now)
            return None
        idle = now - seen.since
        if idle < self.stall_timeout_s:
            return None
        return (
            f"no progress for {idle:.0f} s (quota {p.quota[cat]}, {p.calls_in_flight[cat]} calls in flight, "
            f"{p.in_flight(cat)} candidates in flight)"
        )

    def _saturated(self, p: Progress, cat: str) -> str | None:
        decided = p.books.passed[("novelty", cat)] + p.books.rejected_in(cat, "novelty")
        novel = p.books.passed[("novelty", cat)]
        samples = self.novelty.setdefault(cat, deque())
        samples.append((decided, novel))
        # The most recent window of at least `window` decisions.
        while len(samples) > 1 and decided - samples[1][0] >= self.window:
            samples.popleft()
        then_decided, then_novel = samples[0]
        n = decided - then_decided
        if n < self.window:
            return None
        fresh = novel - then_novel
        if fresh >= self.min_novel_share * n:
            return None
        return f"novelty saturated: {fresh} of the last {n} candidates were novel"
