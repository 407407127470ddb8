"""The books' running totals when the ledger restarts: the driver's copy and the replicas' newest reports."""

from instructflow.actors.core.ledger import Accounts, Ledger, Reporter, newer_reports
from instructflow.instructors.record import Candidate


def generated(n: int) -> Ledger:
    delta = Ledger()
    delta.generate([Candidate(category="trivia", instruction=f"Question {i}?") for i in range(n)])
    return delta


def test_a_last_report_the_restarted_ledger_lost_comes_back_from_the_replicas_stats():
    """The instructor's last report reached a ledger that died before the driver copied it; the
    instructor has nothing more to report. The driver's copy alone restores a stale total; the
    report the replica's stats carry makes it whole, once, whatever arrives twice."""
    instructor, ledger = Reporter("instructor:trivia:0/a"), Accounts()
    ledger.submit(instructor.add(generated(16)))
    drivers_copy = dict(ledger.reports)  # the snapshot the driver keeps every tick
    ledger.submit(instructor.add(generated(4)))  # then the ledger dies with this report

    restarted = Accounts()
    restarted.restore(drivers_copy)
    assert restarted.snapshot().generated["trivia"] == 16  # stale: what the fix is for

    newer = newer_reports(drivers_copy, [instructor.last, None])
    assert list(newer) == ["instructor:trivia:0/a"] and newer["instructor:trivia:0/a"].seq == 2
    restarted.restore(newer)
    restarted.restore(newer)  # handed over again next tick: a report never counts twice
    assert restarted.snapshot().generated["trivia"] == 20
    assert newer_reports(dict(restarted.reports), [instructor.last]) == {}  # nothing newer now
