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
from instructflow.actors.core.producer import ProducerStats

YIELD_PRIOR = 4
# Drops that say nothing about the teacher's yield: the rows were not needed.
SURPLUS_REASONS = frozenset({TARGET_MET, SHUTDOWN, GIVEN_UP, "over_target", "duplicate_id", "duplicate_source"})
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
    # Per category, each instructor replica's stats (in the topology's replica order).
    producers: dict[str, list[ProducerStats]] = field(default_factory=dict)
    answering: Counter[str] = field(default_factory=Counter)  # answer calls in flight
    awaiting_answer: Counter[str] = field(default_factory=Counter)  # admitted, in an answer queue
    downstream: Counter[str] = field(default_factory=Counter)  # answered, not yet accepted or rejected
    unreported: Counter[str] = field(default_factory=Counter)  # generated, report to the books on its way
    kept_tokens: Counter[str] = field(default_factory=Counter)  # teacher tokens of the rows committed
    usd: float | None = None  # what the run's teacher calls cost so far; None without a price
    spent_tokens: int = 0  # every teacher token of the run as the endpoint's limiter counted it
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
    released: int = 0  # admitted vectors taken out of the index: their instruction made no row
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
        pending = self.generated[category] - self.books.terminal(category) - self.lost[category]
        return max(0, pending + self.unreported[category])

    def answer_yield(self, category: str) -> float:
        """Share of the candidates past the novelty stage whose row is accepted (0.05..1): what
        failed or truncated answers, the judges and the writer leave. The same prior as
        `yield_rate` keeps the first rejection from doubling the answers asked for."""
        b = self.books
        losses = sum(
            n for (c, r), n in b.rejected.items()
            if c == category and r.partition(":")[0] != "novelty" and r.partition(":")[2] not in SURPLUS_REASONS
        )
        losses += sum(n for (c, r), n in b.dropped.items() if c == category and r not in SURPLUS_REASONS)
        rate = (b.accepted[category] + YIELD_PRIOR) / (b.accepted[category] + losses + YIELD_PRIOR)
        return min(1.0, max(0.05, rate))

    def past_novelty(self, category: str) -> int:
        """Candidates in flight that the novelty stage has passed: waiting for an answer, being
        answered, or with the judges and the writer."""
        return self.awaiting_answer[category] + self.answering[category] + self.downstream[category]

    def answers_needed(self, category: str) -> int:
        """Answer calls still to start for the target: what the answers already on their way
        (in calls, in the judges, in the writer's queue) will not cover at the observed yield."""
        rate = self.answer_yield(category)
        on_the_way = (self.downstream[category] + self.answering[category]) * rate
        missing = self.targets[category] - self.accepted[category] - on_the_way
        return math.ceil(max(0.0, missing) / rate - 1e-9)

    def yield_rate(self, category: str) -> float:
        """Share of generated candidates that end up accepted (0.05..1): the share the novelty stage
        passes times `answer_yield`. Each factor is measured where it is decided, with a prior of a
        few passes, so the duplicates the novelty stage finds in the first seconds (long before any
        row is accepted) do not read as a collapse in yield and ask the teacher for five times the
        target."""
        b = self.books
        passed = b.passed[("novelty", category)]
        novel = (passed + YIELD_PRIOR) / (passed + b.rejected_in(category, "novelty") + YIELD_PRIOR)
        return min(1.0, max(0.05, novel * self.answer_yield(category)))

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

    What is in flight will yield accepted rows at the yield still ahead of it: candidates the
    novelty stage already passed (waiting for an answer, being answered, judged or written) at
    `answer_yield`, the others at the whole `yield_rate`. The rest of the target is divided by the
    observed yield so that losses to duplicates and judges are made up in one round.
    """
    result = {}
    for category, target in progress.targets.items():
        rate = progress.yield_rate(category)
        in_flight = progress.in_flight(category)
        admitted = min(in_flight, progress.past_novelty(category))
        expected = (progress.accepted[category] + admitted * progress.answer_yield(category)
                    + (in_flight - admitted) * rate)
        missing = max(0.0, target - expected)
        result[category] = math.ceil(missing / rate / max(1, replicas.get(category, 1)))
    return result


@dataclass(frozen=True)
class Cost:
    """What each row of this run cost, against the least it could have cost.

    `minimum` is the tokens the committed rows cost themselves (each row's share of its generating
    call, its answer and its judge calls); everything else went to rejected or surplus work, or to
    calls that made no row (topics, failed replies).
    """

    rows: int  # rows committed by this run
    tokens: int  # every teacher token of this run
    kept_tokens: int  # tokens of the committed rows
    usd: float | None

    @classmethod
    def of(cls, progress: Progress, rows: int) -> Cost:
        tokens = max(progress.prompt_tokens + progress.completion_tokens, progress.spent_tokens)
        return cls(rows, tokens, sum(progress.kept_tokens.values()), progress.usd)

    @property
    def per_row(self) -> float | None:
        return self.tokens / self.rows if self.rows else None

    @property
    def minimum_per_row(self) -> float | None:
        return self.kept_tokens / self.rows if self.rows else None

    @property
    def wasted_share(self) -> float | None:
        """Share of the tokens that bought no committed row."""
        return max(0.0, 1.0 - self.kept_tokens / self.tokens) if self.tokens else None

    @property
    def usd_per_row(self) -> float | None:
        return self.usd / self.rows if self.rows and self.usd is not None else None

    def line(self) -> str:
        if not self.rows:
            return f"{self.tokens:,} tokens, no row yet"
        if self.wasted_share is None:  # no teacher call counted (e.g. every row was resumed)
            return f"the rows' own tokens: {self.minimum_per_row:,.0f}/row"
        text = (f"{self.per_row:,.0f} tokens/row (the rows' own: {self.minimum_per_row:,.0f}; "
                f"{self.wasted_share:.1%} went to rejected or surplus work)")
        if self.usd_per_row is not None:
            text += f" · ${self.usd_per_row:,.5f}/row"
        return text


def split(total: int, parts: int) -> list[int]:
    """`total` over `parts` as evenly as integers allow (the first ones get the remainder)."""
    base, extra = divmod(max(0, total), max(1, parts))
    return [base + (i < extra) for i in range(max(1, parts))]


def caps(progress: Progress, replicas: dict[str, int]) -> dict[str, list[tuple[int, int]]]:
    """Per category, each replica's (generating cap, answer cap) on its own running totals.

    The generating cap is what the replica generated so far plus its quota (`quotas`); the answer
    cap is what it started so far plus its share of `Progress.answers_needed`, split exactly, so the
    answers in flight across replicas never exceed what the target still needs at the observed
    yield. Replicas with no stats yet (starting) get nothing until the next tick.
    """
    quota = quotas(progress, replicas)
    result = {}
    for category in progress.targets:
        stats = progress.producers.get(category, [])
        shares = split(progress.answers_needed(category), len(stats))
        result[category] = [
            (s.generated_total + quota[category], s.answers_started + share)
            for s, share in zip(stats, shares, strict=False)
        ]
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
    signature: tuple[int, ...]
    since: float


class Watchdog:
    """Ends categories that cannot reach their target, so that a run always ends by itself.

    - **No progress**: nothing of the category moved (no candidate generated, none decided) for
      `stall_timeout_s` while its target is unmet.
    - **Novelty saturated**: of the last `window` candidates the novelty stage decided, fewer than
      `min_novel_share` were novel: the teacher keeps repeating itself and every further row would
      cost many paid calls.
    - **Sources exhausted** (second-round categories, `consumes`): every category it reads is
      settled (or not in the run), its replicas have read all of their committed rows, nothing of
      it is in flight, and no source row is left on hand (or one is, but no call can start, e.g.
      for want of a character card). A second-round category waiting for its sources is not
      stalled while they still commit rows.
    """

    def __init__(
        self, stall_timeout_s: float, window: int, min_novel_share: float,
        consumes: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.consumes = consumes or {}  # category -> the categories whose committed rows it reads
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
            reason = self._starved(progress, cat) or self._stalled(progress, cat, now) or self._saturated(progress, cat)
            if reason:
                verdicts[cat] = f"{cat}: {reason}"
        return verdicts

    def _starved(self, p: Progress, cat: str) -> str | None:
        reads = self.consumes.get(cat)
        feeds = [s.feed for s in p.producers.get(cat, [])]
        if not reads or not feeds or any(f is None for f in feeds):
            return None
        if any(c in p.targets and not p.settled(c) for c in reads):
            return None  # a source may still commit rows
        if any(f.seen.get(c, 0) < p.committed[c] for f in feeds for c in reads):
            return None  # committed rows not read yet
        if p.calls_in_flight[cat] or p.in_flight(cat) or p.accepted[cat] >= p.targets[cat]:
            return None  # rows on their way, or the last ones pending in the writer
        missing = next((f.missing for f in feeds if f.missing), None)
        if missing:
            return missing
        if any(f.on_hand for f in feeds):
            return None
        used, handed, unusable = (sum(getattr(f, k) for f in feeds) for k in ("used", "handed", "unusable"))
        sources = [c for c in reads if any(c in f.seen for f in feeds)] or list(reads)
        return (
            f"sources exhausted: every committed row of {', '.join(sources)} is used "
            f"({handed} in this run, {used} by earlier runs, {unusable} unusable)"
        )

    def _stalled(self, p: Progress, cat: str, now: float) -> str | None:
        # A second-round category waiting for source rows is idle, not stalled, while they commit.
        signature = (p.generated[cat], p.books.terminal(cat), sum(p.committed[c] for c in self.consumes.get(cat, ())))
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
