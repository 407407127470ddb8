"""Where every generated candidate ended: the run's books, kept exactly across actor restarts.

A candidate is *generated* when an instructor parses it out of a teacher reply. From then on it is
in flight until it reaches exactly one terminal state:

- **accepted**: the writer took it (it will be committed);
- **rejected** (by reason): a stage judged it and said no (near duplicate, refusal, low score, ...);
- **dropped** (by reason): it was never judged because it was not needed or could not be finished
  (its category's target was met, the run shut down, its answer call failed for good, ...);
- **lost**: an actor or queue holding it died. Nobody reports these; they are what remains of
  `generated` once everything else is counted and nothing is left in flight.

Every stage records what it decided in the run's `Accounts` *before* it passes anything on (see
`core.stage.StageLoop`), so a stage that dies after recording has its decisions counted, and one
that dies before recording leaves its whole batch to be counted as lost: never both, never neither.
Each replica sends its running total (`Reporter`), so the books survive the ledger's own restart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from instructflow.instructors.record import Candidate

# Reasons used by more than one stage.
SHUTDOWN = "shutdown"  # the run stopped (drain) before the candidate could finish
TARGET_MET = "target_met"  # its category had all the rows it needed
GIVEN_UP = "given_up"  # its category was stopped as stalled or saturated


def members(items: Iterable[Candidate | tuple[Candidate, ...]]) -> list[Candidate]:
    """The candidates in a list of queue items (a group travels as one tuple item)."""
    return [c for item in items for c in (item if isinstance(item, tuple) else (item,))]


@dataclass
class Ledger:
    """Counts per category (and reason): a delta one stage reports, or the sum of all of them."""

    generated: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (category, "stage:reason")
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (category, reason)
    passed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, category): not terminal
    # (category, entity): PII the judges found in rows (masked, replaced, or its row rejected)
    scrubbed: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, other: Ledger) -> None:
        for name in ("generated", "accepted", "rejected", "dropped", "passed", "scrubbed"):
            getattr(self, name).update(getattr(other, name))

    def __bool__(self) -> bool:
        """True when anything at all was counted."""
        return any((self.generated, self.accepted, self.rejected, self.dropped, self.passed, self.scrubbed))

    # ------------------------------------------------------------------ recording
    def generate(self, cands: Iterable[Candidate]) -> None:
        self.generated.update(c.category for c in cands)

    def accept(self, cands: Iterable[Candidate]) -> None:
        self.accepted.update(c.category for c in cands)

    def reject(self, cands: Iterable[Candidate], stage: str, reason: str) -> None:
        self.rejected.update((c.category, f"{stage}:{reason}") for c in cands)

    def drop(self, cands: Iterable[Candidate], reason: str) -> None:
        self.dropped.update((c.category, reason) for c in cands)

    def pass_on(self, cands: Iterable[Candidate], stage: str) -> None:
        self.passed.update((stage, c.category) for c in cands)

    # ------------------------------------------------------------------ reading
    def terminal(self, category: str) -> int:
        """Candidates of `category` accepted, rejected or dropped."""
        return (
            self.accepted[category]
            + sum(n for (c, _), n in self.rejected.items() if c == category)
            + sum(n for (c, _), n in self.dropped.items() if c == category)
        )

    def rejected_in(self, category: str, stage: str | None = None) -> int:
        prefix = f"{stage}:" if stage else ""
        return sum(n for (c, r), n in self.rejected.items() if c == category and r.startswith(prefix))

    def by_reason(self) -> Counter[str]:
        """Rejects (``stage:reason``) and drops (``dropped:reason``) over all categories."""
        out: Counter[str] = Counter()
        for (_, reason), n in self.rejected.items():
            out[reason] += n
        for (_, reason), n in self.dropped.items():
            out[f"dropped:{reason}"] += n
        return out


def _copy(ledger: Ledger) -> Ledger:
    copy = Ledger()
    copy.add(ledger)
    return copy


@dataclass
class Report:
    """A reporter's running total: everything it has recorded since it started, numbered."""

    reporter: str  # e.g. "novelty:0/3f2a9c1b7d4e" (role and incarnation)
    seq: int
    total: Ledger


class Reporter:
    """Keeps one replica's running total and numbers its reports. Sending totals rather than deltas
    makes the books rebuildable: a restarted ledger gets every live replica's whole total with its
    next report, and the driver's copy of the last snapshot for replicas that are gone."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seq = 0
        self.total = Ledger()
        self.last: Report | None = None  # the newest report made (sent, or on its way)

    def add(self, delta: Ledger) -> Report:
        self.total.add(delta)
        self.seq += 1
        self.last = Report(self.name, self.seq, _copy(self.total))
        return self.last


class Accounts:
    """The run's books: the latest running total of every reporter. Ray-free core of `LedgerActor`.

    A report never counts twice (a reporter's newer total replaces its older one), and a ledger
    that restarted empty is made whole again by `restore` with the driver's last copy.
    """

    def __init__(self) -> None:
        self.reports: dict[str, Report] = {}
        self._local = Reporter("local")  # `record` from this process (tests, benchmarks)

    def record(self, delta: Ledger) -> None:
        """Adds a delta reported from this process."""
        self.submit(self._local.add(delta))

    def submit(self, report: Report) -> None:
        old = self.reports.get(report.reporter)
        if old is None or report.seq > old.seq:
            self.reports[report.reporter] = report

    def restore(self, reports: dict[str, Report]) -> None:
        """Takes back totals this ledger lost (it restarted); newer ones it already has stay."""
        for report in reports.values():
            self.submit(report)

    def snapshot(self) -> Ledger:
        total = Ledger()
        for report in self.reports.values():
            total.add(report.total)
        return total

    @property
    def total(self) -> Ledger:
        return self.snapshot()


def newer_reports(known: dict[str, Report], reports: Iterable[Report | None]) -> dict[str, Report]:
    """Of `reports` (e.g. the replicas' newest, read from their stats), those newer than the ones
    `known` holds for the same reporter: what books that restarted, or missed a report, lack."""
    out: dict[str, Report] = {}
    for report in reports:
        if report is None:
            continue
        old = known.get(report.reporter)
        if old is None or report.seq > old.seq:
            out[report.reporter] = report
    return out
