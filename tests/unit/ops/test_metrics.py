"""The metric definitions and recording calls, without Ray."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from instructflow.actors import metrics
from instructflow.actors.metrics import METRICS, MetricLabelError

REQUIRED = {
    "instructflow_prompt_tokens_total", "instructflow_completion_tokens_total", "instructflow_requests_total",
    "instructflow_request_latency_seconds", "instructflow_candidates_total", "instructflow_rejects_total",
    "instructflow_requests_in_flight", "instructflow_queue_depth", "instructflow_novelty_vectors",
    "instructflow_commit_latency_seconds", "instructflow_rows_committed_total",
    "instructflow_budget_remaining_tokens", "instructflow_budget_remaining_usd",
    "instructflow_ratelimit_concurrency",
}


@pytest.fixture(autouse=True)
def _clean_table() -> None:
    metrics.reset_local()


def test_every_required_metric_is_defined_once() -> None:
    names = [s.name for s in METRICS]
    keys = [s.key for s in METRICS]
    assert set(names) >= REQUIRED
    assert len(set(names)) == len(names) and len(set(keys)) == len(keys)


@pytest.mark.parametrize("spec", METRICS, ids=lambda s: s.key)
def test_names_follow_prometheus_practice(spec: metrics.MetricSpec) -> None:
    assert re.fullmatch(r"instructflow_[a-z][a-z0-9_]*", spec.name)
    assert spec.name.endswith("_total") == (spec.kind == "counter")
    assert spec.exported == "ray_" + spec.name
    assert set(spec.labels) <= set(metrics.LABELS), "only bounded labels"
    if spec.unit == "seconds":
        assert spec.name.endswith("_seconds")
    if spec.kind == "histogram":
        assert list(spec.buckets) == sorted(spec.buckets) and spec.buckets[0] > 0
    else:
        assert not spec.buckets
    assert spec.description.endswith(".")


def test_recorded_values_land_in_the_local_table() -> None:
    metrics.inc("candidates", 3, category="general", stage="novel")
    metrics.inc("instructflow_candidates_total", 2, category="general", stage="novel")
    metrics.set_gauge("novelty_vectors", 10, shard=0)
    metrics.set_gauge("novelty_vectors", 12, shard=0)
    metrics.observe("commit_latency_seconds", 0.25)
    with metrics.timed("request_latency_seconds", model="m"):
        pass
    table = metrics.snapshot()
    assert table["candidates"] == {(("category", "general"), ("stage", "novel")): 5.0}
    assert table["novelty_vectors"] == {(("shard", "0"),): 12.0}
    assert table["commit_latency_seconds"][(("stat", "count"),)] == 1.0
    assert table["request_latency_seconds"][(("model", "m"), ("stat", "count"))] == 1.0


@pytest.mark.parametrize("call", [
    lambda: metrics.inc("candidates", 1, category="general"),                        # missing stage
    lambda: metrics.inc("candidates", 1, category="general", stage="novel", id="7"),   # extra label
    lambda: metrics.inc("candidates", 1, category="general", stage="novelty"),       # not a milestone
    lambda: metrics.inc("rejects", 1, category="general", stage="novel", reason="x"),  # not a stage name
    lambda: metrics.inc("requests", 1, category="c", model="m", status_class="404"),  # a status, not a class
    lambda: metrics.inc("rejects", 1, category="c", stage="judge", reason="score was 3 of 10"),
    lambda: metrics.set_gauge("queue_depth", 1, queue="a" * 81),
    lambda: metrics.set_gauge("queue_depth", 1, queue=None),
])
def test_wrong_labels_raise(call) -> None:
    with pytest.raises(MetricLabelError):
        call()


def test_wrong_calls_raise() -> None:
    with pytest.raises(KeyError, match="unknown metric"):
        metrics.inc("candidate", 1, category="c", stage="novel")
    with pytest.raises(TypeError, match="is a gauge"):
        metrics.inc("queue_depth", 1, queue="judge")
    with pytest.raises(TypeError, match="is a counter"):
        metrics.set_gauge("candidates", 1, category="c", stage="novel")
    with pytest.raises(ValueError, match="only go up"):
        metrics.inc("rows_committed", -1, category="c")
    with pytest.raises(TypeError, match="number"):
        metrics.set_gauge("budget_remaining_usd", "3")
    with pytest.raises(MetricLabelError):  # a zero increment records nothing but is still checked
        metrics.inc("rows_committed", 0, categry="c")


def test_zero_increment_records_nothing() -> None:
    metrics.inc("rows_committed", 0, category="c")
    assert metrics.snapshot() == {}


def test_empty_label_value_is_allowed() -> None:
    metrics.inc("requests", 1, category="", model="m", status_class="2xx")
    assert metrics.snapshot()["requests"]


def test_import_needs_neither_ray_nor_prometheus_client() -> None:
    code = "import sys, instructflow.actors.metrics; print('ray' in sys.modules, 'prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_serve_prometheus_exports_the_same_names_as_ray() -> None:
    """In a child process: the HTTP server and the backend switch are process-wide."""
    code = textwrap.dedent("""
        import urllib.request
        from instructflow.actors import metrics
        port = metrics.serve_prometheus(0)
        assert metrics.serve_prometheus(0) == port
        metrics.inc("candidates", 4, category="general", stage="written")
        metrics.set_gauge("budget_remaining_usd", 12.5)
        metrics.observe("request_latency_seconds", 0.3, model="m")
        print(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert 'ray_instructflow_candidates_total{category="general",stage="written"} 4.0' in text
    assert "ray_instructflow_budget_remaining_usd 12.5" in text
    assert 'ray_instructflow_request_latency_seconds_count{model="m"} 1.0' in text
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    expected = {series for spec in METRICS for series in spec.series()}
    assert exported - expected <= {n.removesuffix("_total") + "_created" for n in expected} | {
        n.removesuffix("_bucket") + "_created" for n in expected}
