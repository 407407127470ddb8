"""A run always ends: by itself, with exact books, and with a named reason when a target cannot be met.

Replays issue 11's stall on the stub teacher: one category meets its target early while the other
still needs most of its rows, with a small answer queue. Before the stage kernel the novelty worker
blocked forever on the finished category's full answer queue, and the other category never got
another teacher call. Since the cost steering of issue 12 a finished category rarely has admitted
instructions left over, so the drop of those on a retired queue is pinned by the kernel's unit tests
(tests/unit/actors/test_producer.py, test_queue.py); this test checks the run end to end: the other
category keeps getting rows after the first one finished, and the books balance.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster.accounting import SURPLUS_REASONS
from instructflow.cluster.driver import RunError, run
from instructflow.config import parse_config
from tests.integration.conftest import stub_config
from tests.integration.dataset_checks import read_parts

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def books_balance(progress) -> None:
    """Every generated candidate is accepted, rejected, dropped or lost, and none is in flight."""
    b = progress.books
    for cat in progress.targets:
        assert progress.generated[cat] == b.terminal(cat) + progress.lost[cat], cat
        assert progress.in_flight(cat) == 0


def test_a_finished_category_never_stalls_the_others(ray_local, stub_teacher, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stub_teacher.set_faults(p_duplicate=0.4, latency_s=0.2)
    try:
        data = stub_config(
            stub_teacher, out,
            {"general": {"count": 100, "batch_size": 10, "concurrency": 10},
             "trivia": {"count": 300, "batch_size": 5, "concurrency": 2}},
            queues={"answer": 16},
            run={"stall_timeout_s": 60},
        )
        progress = run(parse_config(yaml.safe_dump(data)))
    finally:
        stub_teacher.set_faults(p_duplicate=0.0, latency_s=0.02)
    assert progress.all_done()
    rows = read_parts(out)
    assert sum(r["category"] == "general" for r in rows) == 100
    assert sum(r["category"] == "trivia" for r in rows) == 300
    books_balance(progress)
    assert progress.lost == {"general": 0, "trivia": 0}
    # The scenario happened: general finished while trivia still needed most of its rows, and trivia
    # went on getting rows after that.
    general_done = max(r["created_at"] for r in rows if r["category"] == "general")
    assert sum(r["category"] == "trivia" and r["created_at"] > general_done for r in rows) >= 100
    # Whatever general had left over was dropped as surplus, never lost or left in flight.
    assert {r for (c, r), n in progress.books.dropped.items() if c == "general" and n} <= SURPLUS_REASONS


def test_a_worn_out_category_ends_the_run_with_a_named_reason(ray_local, stub_teacher, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stub_teacher.reset_stats()
    stub_teacher.set_faults(wear={"trivia": 15})
    try:
        data = stub_config(
            stub_teacher, out,
            {"general": {"count": 20, "batch_size": 5, "concurrency": 2},
             "trivia": {"count": 1000, "batch_size": 5, "concurrency": 2}},
            run={"stall_timeout_s": 60, "saturation_window": 60, "min_novel_share": 0.05},
        )
        with pytest.raises(RunError, match=r"incomplete: trivia: novelty saturated: \d+ of the last \d+ candidates were novel"):
            run(parse_config(yaml.safe_dump(data)))
    finally:
        stub_teacher.set_faults(wear={})
    rows = read_parts(out)
    assert sum(r["category"] == "general" for r in rows) == 20  # the other category still completed
    assert 0 < sum(r["category"] == "trivia" for r in rows) < 1000
    assert len({r["id"] for r in rows}) == len(rows)
