"""The reliability table: results recorded from marked tests, rendered into the doc's marked block."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import reliability


class FakeItem:
    def __init__(self, nodeid: str, **fault: str) -> None:
        self.nodeid = nodeid
        self.stash = pytest.Stash()
        self._marker = SimpleNamespace(kwargs=fault) if fault else None

    def get_closest_marker(self, name: str):
        return self._marker if name == "fault" else None


def report(when: str, outcome: str, duration: float = 1.0):
    return SimpleNamespace(when=when, outcome=outcome, duration=duration, passed=outcome == "passed",
                           failed=outcome == "failed", skipped=outcome == "skipped")


def test_records_the_latest_outcome_of_marked_tests_only(tmp_path):
    results = tmp_path / "reliability.json"
    item = FakeItem("t.py::test_kill", fault="writer killed", expected="nothing lost")
    for when, outcome in [("setup", "passed"), ("call", "failed"), ("teardown", "passed")]:
        reliability.record(item, report(when, outcome, 2.0), results)
    reliability.record(FakeItem("t.py::test_plain"), report("call", "passed"), results)
    [entry] = reliability.load(results)
    assert entry["outcome"] == "failed" and entry["duration_s"] == 4.0  # setup + call
    again = FakeItem("t.py::test_kill", fault="writer killed", expected="nothing lost")
    reliability.record(again, report("setup", "passed"), results)
    reliability.record(again, report("call", "passed"), results)
    assert [e["outcome"] for e in reliability.load(results)] == ["passed"]


def test_a_failing_setup_or_teardown_is_recorded_as_such(tmp_path):
    results = tmp_path / "reliability.json"
    item = FakeItem("t.py::a", fault="f", expected="e")
    reliability.record(item, report("setup", "skipped"), results)
    other = FakeItem("t.py::b", fault="f", expected="e")
    for when, outcome in [("setup", "passed"), ("call", "passed"), ("teardown", "failed")]:
        reliability.record(other, report(when, outcome), results)
    assert {e["nodeid"]: e["outcome"] for e in reliability.load(results)} == {"t.py::a": "skipped", "t.py::b": "failed"}


def test_a_marker_without_both_texts_is_a_usage_error():
    with pytest.raises(pytest.UsageError, match="expected"):
        reliability.fault_of(FakeItem("t.py::x", fault="only the fault"))


def test_render_replaces_only_the_marked_block():
    entries = [{"nodeid": "t.py::k", "fault": "a | b", "expected": "ok", "outcome": "passed",
                "duration_s": 1.25, "at": "2026-01-01T00:00:00+0000"}]
    doc = f"# Reliability\n\nprose\n\n{reliability.BEGIN}\nold table\n{reliability.END}\n\nmore prose\n"
    out = reliability.render(doc, entries)
    assert "old table" not in out and out.startswith("# Reliability\n\nprose") and out.endswith("more prose\n")
    assert "| a \\| b | ok | passed (1.2 s) | `t.py::k` |" in out
    assert reliability.render(out, entries) == out  # idempotent
    assert reliability.BEGIN in reliability.render("# Title\n", entries)


def test_results_of_tests_that_no_longer_exist_are_left_out():
    entries = [{"nodeid": "t.py::test_k[new-id]"}, {"nodeid": "t.py::test_k[old-id]"}, {"nodeid": "gone.py::t"}]
    assert reliability.current(entries, {"t.py::test_k[new-id]", "t.py::other"}) == entries[:1]
