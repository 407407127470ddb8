"""Metrics end to end: a pipeline run as a Ray job, its node's metrics port, and a real Prometheus.

One module-scoped run: a `ray start --head` with a fixed `--metrics-export-port` (and a 1 s metrics
report interval, so short rate windows fill), a real Prometheus scraping that port every second, and
a small two-category job against the stub teacher with a token and a cost budget, some 429s and some
duplicates, so that every metric gets values. The tests then read (a) what the Ray endpoint itself
exported and (b) every dashboard panel query, evaluated by Prometheus inside the run's active window.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from instructflow.actors.metrics import METRICS, STAGES
from instructflow.cluster.dashboard import panel_queries
from tests.integration.conftest import stub_config
from tests.integration.raycluster import LocalHead, free_port, stop_group
from tests.prerequisites import unavailable

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PROMETHEUS = shutil.which("prometheus")
TARGETS = {"general": 24, "trivia": 16}
RATE = "10s"  # the panels' rate window: ten 1 s scrapes
PREFIX = "ray_instructflow_"


class LocalPrometheus:
    """A real Prometheus on 127.0.0.1 scraping one target every second, data kept under `root`."""

    def __init__(self, binary: str, root: Path, target: str) -> None:
        self.binary, self.root, self.target = binary, root, target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalPrometheus:
        self.root.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "ray", "static_configs": [{"targets": [self.target]}]}],
        }
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(self.root / "prometheus.log", "w")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.root / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1d", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"Prometheus not ready within 30 s; see {self.root / 'prometheus.log'}")
            time.sleep(0.2)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def __exit__(self, *exc: object) -> None:
        stop_group(self.proc, grace_s=10)
        self.log.close()

    def api(self, path: str, **params: object) -> dict:
        """GET /api/v1/<path>; raises AssertionError with Prometheus' error text when it fails."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        assert body.get("status") == "success", f"{path} {params}: {body.get('error', body)}"
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict]:
        """An instant query evaluated at unix time `at`."""
        return self.api("query", query=expr, time=f"{at:.3f}")["result"]


@dataclass
class EndpointLog:
    """What the Ray metrics endpoint showed over the run: every label name and value per series."""

    labels: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    values: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    first_seen: float | None = None  # unix time of the first instructflow sample
    scrapes: int = 0

    def add(self, text: str) -> list:
        samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples if s.name.startswith(PREFIX)]
        for s in samples:
            self.labels[s.name] |= set(s.labels)
            for label, value in s.labels.items():
                self.values[(s.name, label)].add(value)
        if samples and self.first_seen is None:
            self.first_seen = time.time()
        self.scrapes += 1
        return samples


def total(samples: list, name: str, **match: str) -> float:
    """Sum of a series over every worker (and any other label not matched)."""
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in match.items()))


@dataclass
class Run:
    log: EndpointLog
    final: list  # the endpoint's samples once every counter settled
    prometheus: LocalPrometheus
    start: float
    end: float
    stdout: str


def _scrape_while(head: LocalHead, log: EndpointLog, running: threading.Event) -> None:
    while running.is_set():
        # The agent may be busy for a moment on a loaded machine; the next scrape counts.
        with contextlib.suppress(OSError):
            log.add(head.scrape_metrics())
        time.sleep(0.5)  # a scrape interval, not synchronisation


def _settled(head: LocalHead, log: EndpointLog, rows: int, timeout_s: float = 30) -> list:
    """The endpoint's samples once the committed rows reach `rows` (export lags up to ~2 intervals)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = log.add(head.scrape_metrics())
        if total(samples, PREFIX + "rows_committed_total") >= rows or time.monotonic() > deadline:
            return samples
        time.sleep(0.5)


def _wait_stored(prom: LocalPrometheus, end: float, timeout_s: float = 30) -> None:
    """Waits until Prometheus holds a scrape taken after `end`, so the active window is all stored."""
    expr = f"max(timestamp({PREFIX}rows_committed_total))"
    deadline = time.monotonic() + timeout_s
    while not any(float(r["value"][1]) > end for r in prom.query(expr, time.time())):
        assert time.monotonic() < deadline, f"Prometheus stored no scrape after the run within {timeout_s} s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if PROMETHEUS is None:
        unavailable("no `prometheus` binary on PATH (Debian package `prometheus`; `make test` installs it)")
    from instructflow.instructors.teacher.stub import StubTeacher

    tmp = tmp_path_factory.mktemp("prom")
    head = LocalHead(tmp)
    head.env["RAY_metrics_report_interval_ms"] = "1000"  # workers report every second, not every 10
    budget = {"max_tokens_total": 5_000_000, "max_cost_usd": 100.0,
              "prices": {"stub": {"prompt_per_1k": 0.01, "completion_per_1k": 0.03}}}
    # Replies repeated verbatim (p_duplicate) are what the novelty stage rejects here. Small batches
    # mean about 20 generating calls, so the chance that none of them repeats is 0.7^19 < 0.1%.
    with StubTeacher(seed=11, latency_s=0.3, p_429=0.1, retry_after_s=0.2, p_duplicate=0.3) as stub, head, \
            LocalPrometheus(PROMETHEUS, tmp / "prometheus", f"127.0.0.1:{head.metrics_port}") as prom:
        cats = {name: {"count": n, "batch_size": 2, "concurrency": 2} for name, n in TARGETS.items()}
        config = tmp / "job.yaml"
        config.write_text(yaml.safe_dump(stub_config(stub, tmp / "out", cats, teacher={"budget": budget})))
        log, running = EndpointLog(), threading.Event()
        running.set()
        scraper = threading.Thread(target=_scrape_while, args=(head, log, running), daemon=True)
        scraper.start()
        begun = time.time()
        done = head.submit_when_ready([sys.executable, "-m", "instructflow.cluster.cli", "generate", "--config", str(config)])
        end = time.time()
        running.clear()
        scraper.join(15)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        final = _settled(head, log, sum(TARGETS.values()))
        _wait_stored(prom, end)
        yield Run(log, final, prom, log.first_seen or begun, end, done.stdout)


def test_endpoint_exports_every_metric_with_its_labels(run):
    for spec in METRICS:
        for name in spec.series():
            assert name in run.log.labels, f"{name} never appeared on the Ray metrics port"
            extra = {"le"} if name.endswith("_bucket") else set()
            missing = (set(spec.labels) | extra) - run.log.labels[name]
            assert not missing, f"{name} lacks labels {missing}: has {sorted(run.log.labels[name])}"
    values = run.log.values
    # No stage records `generated` yet: an instructor's generate() parses its reply itself, so the
    # shell sees parsed candidates only (left to the pipeline's owner).
    assert set(STAGES) - {"generated"} <= values[(PREFIX + "candidates_total", "stage")]
    assert {"2xx", "429"} <= values[(PREFIX + "requests_total", "status_class")]
    assert {"novelty", "judge", "writer"} <= values[(PREFIX + "queue_depth", "queue")]
    assert {"0", "1"} <= values[(PREFIX + "novelty_vectors", "shard")]
    assert set(TARGETS) <= values[(PREFIX + "prompt_tokens_total", "category")]
    assert values[(PREFIX + "requests_in_flight", "model")] == {"stub"}
    assert "novelty" in values[(PREFIX + "rejects_total", "stage")]


def test_counters_moved(run):
    s = run.final
    for category, target in TARGETS.items():
        assert total(s, PREFIX + "rows_committed_total", category=category) == target
        assert total(s, PREFIX + "candidates_total", category=category, stage="written") == target
        assert total(s, PREFIX + "prompt_tokens_total", category=category) > 0
        assert total(s, PREFIX + "completion_tokens_total", category=category) > 0
    assert total(s, PREFIX + "requests_total", status_class="429") > 0
    assert total(s, PREFIX + "requests_total", status_class="2xx") > 0
    attempts = total(s, PREFIX + "requests_total")
    assert total(s, PREFIX + "request_latency_seconds_count") == attempts
    assert total(s, PREFIX + "commit_latency_seconds_count") >= 1
    assert total(s, PREFIX + "rejects_total", stage="novelty") > 0


def _first_data(prom: LocalPrometheus, expr: str, times: list[float]) -> tuple[float | None, list]:
    """The first evaluation time (latest first) at which `expr` returns a non-NaN value."""
    result: list = []
    for at in times:
        result = prom.query(expr, at)
        if any(not math.isnan(float(r["value"][1])) for r in result):
            return at, result
    return None, result


def test_every_panel_query_returns_data_in_prometheus(run):
    prom = run.prometheus
    targets = prom.api("targets")["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    # Latest first: near the end every series exists and the rate windows are full.
    times = [run.end - i for i in range(int(run.end - run.start) + 2)]
    empty = []
    for title, expr in panel_queries(rate_interval=RATE, time_range="15m"):
        at, result = _first_data(prom, expr, times)
        if at is None:
            empty.append(f"{title}: {expr} -> {result}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    ours = prom.query(f'count({{__name__=~"{PREFIX}.+"}})', run.end)
    everything = prom.query('count({__name__=~".+"})', run.end)
    print(f"\nprometheus: {ours[0]['value'][1]} instructflow series of {everything[0]['value'][1]} "
          f"at the run's end; active window {run.end - run.start:.0f} s; {run.log.scrapes} endpoint scrapes")
