"""Every instructflow metric, defined once, and the three calls that record them.

Actors call `inc`, `set_gauge` and `observe` with a metric key and its labels. The metric objects
are created lazily in each process, on first use, so importing this module needs neither Ray nor
prometheus-client. Where a value goes depends on the process:

- inside Ray (an actor, or a driver after `ray.init`): `ray.util.metrics`, which the node's metrics
  agent exports with a `ray_` prefix (`instructflow_rows_committed_total` is scraped as
  `ray_instructflow_rows_committed_total`; measured on Ray 2.60);
- after `serve_prometheus(port)`: prometheus-client on that port, under the same exported names, so
  one dashboard reads both;
- otherwise: an in-process table (`snapshot()`), so Ray-free cores and their unit tests can record.

Label names are checked against the spec on every call: a wrong or missing label is a programming
error and raises. Label values must be short identifiers (never ids or free text), and `stage` and
`status_class` must come from their fixed sets, so every label set stays bounded.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["counter", "gauge", "histogram"]

PREFIX = "instructflow_"
RAY_EXPORT_PREFIX = "ray_"  # what Ray's metrics agent puts in front of every user metric

# `candidates` counts milestones a candidate reached; `rejects` names the stage that dropped it.
STAGES = ("generated", "parsed", "novel", "judged", "written")
REJECT_STAGES = ("generate", "parse", "novelty", "judge", "write")
# The teacher client's classes: "connection" when no response came, "error" for anything else.
STATUS_CLASSES = ("2xx", "429", "4xx", "5xx", "timeout", "connection", "error")

# Labels with a closed set of values, per (metric key, label) first, then per label; the others are
# checked only for shape: a short identifier, or empty (Prometheus reads "" as "label absent").
LABEL_CHOICES: dict[str, tuple[str, ...]] = {
    "rejects.stage": REJECT_STAGES,
    "stage": STAGES,
    "status_class": STATUS_CLASSES,
}
LABELS = ("category", "model", "stage", "reason", "status_class", "shard", "queue")
_VALUE_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,79})?$")

REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MetricLabelError(ValueError):
    """Labels that do not match a metric's spec (a bug in the caller, never a data problem)."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric as Prometheus sees it.

    Attributes:
        key: Short name used by the recording calls (`"candidates"`).
        name: Full Prometheus name without Ray's prefix (`"instructflow_candidates_total"`).
        kind: `counter`, `gauge` or `histogram`.
        unit: Base unit of the value (`tokens`, `seconds`, `usd`, ...).
        labels: The label names every observation must carry, in order.
        description: One line for HELP text and the docs.
        buckets: Histogram bucket upper bounds (histograms only).
    """

    key: str
    name: str
    kind: Kind
    unit: str
    labels: tuple[str, ...]
    description: str
    buckets: tuple[float, ...] = ()

    @property
    def base_name(self) -> str:
        """The name given to the client library; counters get `_total` added on export."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name

    @property
    def exported(self) -> str:
        """The name scraped from a Ray node's metrics port."""
        return RAY_EXPORT_PREFIX + self.name

    def series(self) -> tuple[str, ...]:
        """Every exported series name (a histogram has `_bucket`, `_sum` and `_count`)."""
        if self.kind == "histogram":
            return tuple(f"{self.exported}{s}" for s in ("_bucket", "_sum", "_count"))
        return (self.exported,)


def _spec(key: str, kind: Kind, unit: str, labels: tuple[str, ...], description: str, **kw: Any) -> MetricSpec:
    suffix = "_total" if kind == "counter" else ""
    return MetricSpec(key, f"{PREFIX}{key}{suffix}", kind, unit, labels, description, **kw)


METRICS: list[MetricSpec] = [
    _spec("prompt_tokens", "counter", "tokens", ("category", "model"), "Prompt tokens sent to the teacher."),
    _spec("completion_tokens", "counter", "tokens", ("category", "model"), "Completion tokens received from the teacher."),
    _spec("requests", "counter", "requests", ("category", "model", "status_class"),
          "Teacher requests by outcome (2xx, 429, 4xx, 5xx, timeout, connection, error); each retry counts."),
    _spec("request_latency_seconds", "histogram", "seconds", ("model",),
          "Wall time of one teacher request attempt.", buckets=REQUEST_BUCKETS),
    _spec("candidates", "counter", "candidates", ("category", "stage"),
          "Candidates that passed each stage: generated, parsed, novel, judged, written."),
    _spec("rejects", "counter", "candidates", ("category", "stage", "reason"),
          "Candidates dropped, by the stage that dropped them (parse, novelty, judge, ...) and a short reason code."),
    _spec("requests_in_flight", "gauge", "requests", ("model",), "Teacher requests currently waiting for a reply."),
    _spec("queue_depth", "gauge", "items", ("queue",), "Items waiting in a bounded queue between stages."),
    _spec("novelty_vectors", "gauge", "vectors", ("shard",), "Vectors held by one novelty index shard."),
    _spec("commit_latency_seconds", "histogram", "seconds", (),
          "Time to write and commit one output part (data plus manifest).", buckets=COMMIT_BUCKETS),
    _spec("rows_committed", "counter", "rows", ("category",), "Rows made durable by a manifest commit."),
    _spec("row_tokens", "counter", "tokens", ("category",),
          "Teacher tokens (prompt + completion) the committed rows cost themselves: the minimum the kept "
          "rows could have cost; the rest of the tokens went to rejected or surplus work."),
    _spec("cost_spent_usd", "gauge", "usd", ("model",),
          "Dollars the run's teacher calls cost so far, at the prices in teacher.budget.prices."),
    _spec("last_commit_timestamp_seconds", "gauge", "seconds", (),
          "Unix time of the latest manifest commit; now minus this is the commit lag."),
    _spec("budget_remaining_tokens", "gauge", "tokens", (), "Tokens left before the token budget stops new requests."),
    _spec("budget_remaining_usd", "gauge", "usd", (), "Dollars left before the cost budget stops new requests."),
    _spec("ratelimit_concurrency", "gauge", "requests", ("model",),
          "Concurrent requests the adaptive rate limiter currently allows."),
]

_BY_KEY: dict[str, MetricSpec] = {}
for _s in METRICS:
    _BY_KEY[_s.key] = _s
    _BY_KEY[_s.name] = _s


def get_spec(metric: str) -> MetricSpec:
    """Looks a metric up by key (`"candidates"`) or full name; raises KeyError listing the keys."""
    try:
        return _BY_KEY[metric]
    except KeyError:
        known = ", ".join(s.key for s in METRICS)
        raise KeyError(f"unknown metric {metric!r}; known: {known}") from None


def _check_labels(spec: MetricSpec, labels: dict[str, Any]) -> dict[str, str]:
    if set(labels) != set(spec.labels):
        missing = sorted(set(spec.labels) - set(labels))
        extra = sorted(set(labels) - set(spec.labels))
        raise MetricLabelError(
            f"{spec.key}: labels must be exactly {list(spec.labels)} (missing {missing}, unexpected {extra})"
        )
    clean: dict[str, str] = {}
    for label in spec.labels:
        raw = labels[label]
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise MetricLabelError(f"{spec.key}: label {label}={raw!r} must be a str or int")
        value = str(raw)
        choices = LABEL_CHOICES.get(f"{spec.key}.{label}", LABEL_CHOICES.get(label))
        if choices is not None and value not in choices:
            raise MetricLabelError(f"{spec.key}: {label}={value!r} is not one of {list(choices)}")
        if not _VALUE_RE.match(value):
            raise MetricLabelError(
                f"{spec.key}: {label}={value!r} is not a short identifier (ids and free text are not labels)"
            )
        clean[label] = value
    return clean


def _check_kind(spec: MetricSpec, *kinds: Kind) -> None:
    if spec.kind not in kinds:
        raise TypeError(f"{spec.key} is a {spec.kind}; this call is for {' or '.join(kinds)}")


class _LocalBackend:
    """Keeps values in memory; used when the process is neither in Ray nor serving Prometheus."""

    def __init__(self) -> None:
        self.values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}

    def record(self, spec: MetricSpec, op: str, value: float, labels: dict[str, str]) -> None:
        key = tuple(sorted(labels.items()))
        with _lock:
            table = self.values.setdefault(spec.key, {})
            if op == "set":
                table[key] = value
            elif op == "inc":
                table[key] = table.get(key, 0.0) + value
            else:  # observe: keep count and sum, enough for tests
                for stat, amount in (("count", 1.0), ("sum", value)):
                    row = (*key, ("stat", stat))
                    table[row] = table.get(row, 0.0) + amount


class _RayBackend:
    """`ray.util.metrics` objects, one per metric, created on first use in this process."""

    def __init__(self) -> None:
        self._objects: dict[str, Any] = {}

    def _get(self, spec: MetricSpec) -> Any:
        obj = self._objects.get(spec.key)
        if obj is None:
            from ray.util import metrics as ray_metrics

            if spec.kind == "counter":
                obj = ray_metrics.Counter(spec.base_name, spec.description, tag_keys=spec.labels)
            elif spec.kind == "gauge":
                obj = ray_metrics.Gauge(spec.base_name, spec.description, tag_keys=spec.labels)
            else:
                obj = ray_metrics.Histogram(
                    spec.base_name, spec.description, boundaries=list(spec.buckets), tag_keys=spec.labels
                )
            self._objects[spec.key] = obj
        return obj

    def record(self, spec: MetricSpec, op: str, value: float, labels: dict[str, str]) -> None:
        obj = self._get(spec)
        tags = labels or None
        if op == "inc":
            obj.inc(value, tags=tags)
        elif op == "set":
            obj.set(value, tags=tags)
        else:
            obj.observe(value, tags=tags)


class _PrometheusBackend:
    """prometheus-client metrics in a private registry, served over HTTP by `serve_prometheus`."""

    def __init__(self, prefix: str) -> None:
        import prometheus_client as pc

        self.registry = pc.CollectorRegistry(auto_describe=True)
        self.prefix = prefix
        self._objects: dict[str, Any] = {}
        for spec in METRICS:
            name, labels = prefix + spec.base_name, list(spec.labels)
            if spec.kind == "counter":
                obj = pc.Counter(name, spec.description, labels, registry=self.registry)
            elif spec.kind == "gauge":
                obj = pc.Gauge(name, spec.description, labels, registry=self.registry)
            else:
                obj = pc.Histogram(name, spec.description, labels, registry=self.registry, buckets=spec.buckets)
            self._objects[spec.key] = obj

    def record(self, spec: MetricSpec, op: str, value: float, labels: dict[str, str]) -> None:
        obj = self._objects[spec.key]
        target = obj.labels(**labels) if labels else obj
        if op == "inc":
            target.inc(value)
        elif op == "set":
            target.set(value)
        else:
            target.observe(value)


_lock = threading.Lock()
_local = _LocalBackend()
_ray: _RayBackend | None = None
_prom: _PrometheusBackend | None = None
_prom_port: int | None = None


def _backend() -> _LocalBackend | _RayBackend | _PrometheusBackend:
    global _ray
    if _prom is not None:
        return _prom
    if _ray is not None:
        return _ray
    ray = sys.modules.get("ray")  # never import Ray here: a process that has not imported it is not in Ray
    if ray is not None and ray.is_initialized():
        with _lock:
            _ray = _ray or _RayBackend()
        return _ray
    return _local


def _record(metric: str, op: str, value: float, labels: dict[str, Any], *kinds: Kind) -> None:
    spec = get_spec(metric)
    _check_kind(spec, *kinds)
    clean = _check_labels(spec, labels)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{spec.key}: value must be a number, got {value!r}")
    _backend().record(spec, op, float(value), clean)


def inc(metric: str, value: float = 1, **labels: Any) -> None:
    """Adds `value` (>= 0; 0 is a no-op) to a counter, e.g. `inc("candidates", 3, category="general", stage="novel")`."""
    if value < 0:
        raise ValueError(f"{metric}: counters only go up, got {value}")
    if value == 0:  # Ray rejects inc(0); checking labels still catches a bad call early
        _check_labels(get_spec(metric), labels)
        return
    _record(metric, "inc", value, labels, "counter")


def set_gauge(metric: str, value: float, **labels: Any) -> None:
    """Sets a gauge, e.g. `set_gauge("queue_depth", 17, queue="judge")`."""
    _record(metric, "set", value, labels, "gauge")


def observe(metric: str, value: float, **labels: Any) -> None:
    """Adds one observation to a histogram, e.g. `observe("request_latency_seconds", 0.8, model="m")`."""
    _record(metric, "observe", value, labels, "histogram")


@contextmanager
def timed(metric: str, **labels: Any) -> Iterator[None]:
    """Observes the wall time of the `with` block into a histogram (also when the block raises)."""
    _check_labels(get_spec(metric), labels)
    start = time.perf_counter()
    try:
        yield
    finally:
        observe(metric, time.perf_counter() - start, **labels)


def serve_prometheus(port: int = 0, addr: str = "127.0.0.1", prefix: str = RAY_EXPORT_PREFIX) -> int:
    """Serves this process's metrics with prometheus-client; returns the bound port.

    For code that runs outside Ray. The default `prefix` makes the exported names identical to what
    Ray's agent exports (`ray_instructflow_...`), so the same dashboard queries read both. A second
    call returns the port already bound.
    """
    global _prom, _prom_port
    from prometheus_client import start_http_server

    with _lock:
        if _prom is not None:
            if prefix != _prom.prefix:
                raise RuntimeError(f"already serving with prefix {_prom.prefix!r}")
            return _prom_port or 0
        backend = _PrometheusBackend(prefix)
        server, _thread = start_http_server(port, addr=addr, registry=backend.registry)
        _prom, _prom_port = backend, int(server.server_port)
        return _prom_port


def snapshot() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Values recorded by the in-process table (histograms as `stat=count`/`stat=sum` rows)."""
    with _lock:
        return {key: dict(table) for key, table in _local.values.items()}


def reset_local() -> None:
    """Empties the in-process table (for tests)."""
    with _lock:
        _local.values.clear()
