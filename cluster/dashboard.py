"""The instructflow Grafana dashboard, generated from a list of panels.

Every query names metrics through `sel()`, which looks them up in `instructflow.actors.metrics.METRICS`
and adds the dashboard's filters, so a query cannot name a metric the code does not export. The
template variables follow Ray's own dashboards (`datasource`, `SessionName`, `Cluster` over the
`ray_io_cluster` label that KubeRay's PodMonitor relabelling adds), plus `Category`.

    python -m instructflow.cluster.dashboard --out helm/instructflow/dashboards/instructflow.json
    python -m instructflow.cluster.dashboard --markdown          # panel table for the docs
    python -m instructflow.cluster.dashboard --metrics-markdown  # metric reference for the docs
    python -m instructflow.cluster.dashboard --docs docs/operations.md  # refresh both tables there
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from instructflow.actors.metrics import METRICS, get_spec

DEFAULT_OUT = Path("helm/instructflow/dashboards/instructflow.json")
RATE = "$__rate_interval"
RANGE = "$__range"
# What each template variable becomes for a plain Prometheus (no Grafana): match everything,
# including series that lack the label (a local Ray has no ray_io_cluster label).
PLAIN_PROMETHEUS = {"$SessionName": ".*", "$Cluster": ".*", "$Category": ".*"}
_GRAFANA_UNITS = {"seconds": "s", "ratio": "percentunit", "USD": "currencyUSD", "short": "short"}


def sel(metric: str, suffix: str = "", **matchers: str) -> str:
    """A selector for one exported series, with the dashboard filters added.

    Args:
        metric: A key or name from METRICS (`"candidates"`).
        suffix: `_bucket`, `_sum` or `_count` for a histogram; empty otherwise.
        **matchers: Extra label matchers as PromQL text, e.g. `status_class='="429"'`.
    """
    spec = get_spec(metric)
    if spec.exported + suffix not in spec.series():
        raise ValueError(f"{spec.exported}{suffix} is not a series of {spec.key}")
    parts = ['SessionName=~"$SessionName"', 'ray_io_cluster=~"$Cluster"']
    if "category" in spec.labels:
        parts.append('category=~"$Category"')
    for label, match in matchers.items():
        if label not in spec.labels:
            raise ValueError(f"{spec.key} has no label {label!r}")
        parts.append(f"{label}{match}")
    return f"{spec.exported}{suffix}{{{','.join(parts)}}}"


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel and its legend (Grafana `{{label}}` syntax)."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: what it shows, in which unit, from which queries."""

    title: str
    unit: str
    targets: tuple[Target, ...]
    description: str = ""
    kind: Literal["timeseries", "bargauge"] = "timeseries"


def _rate(metric: str, by: str = "", **matchers: str) -> str:
    group = f" by ({by}) " if by else ""
    return f"sum{group}(rate({sel(metric, **matchers)}[{RATE}]))"


def _increase(metric: str) -> str:
    return f"sum(increase({sel(metric)}[{RANGE}]))"


def _quantiles(metric: str, by: str = "") -> tuple[Target, ...]:
    group = f"le, {by}" if by else "le"
    legend = f" {{{{{by}}}}}" if by else ""
    bucket = sel(metric, "_bucket")
    return tuple(
        Target(f"histogram_quantile({q}, sum by ({group}) (rate({bucket}[{RATE}])))", f"p{round(q * 100)}{legend}")
        for q in (0.5, 0.95, 0.99)
    )


# `or vector(0)`: with no 429 yet the ratio is 0, not "no data".
_THROTTLED = _rate("requests", status_class='="429"')
_FAILED = _rate("requests", status_class='=~"4xx|5xx|timeout|connection|error"')
_ALL_REQUESTS = _rate("requests")

PANELS: list[Panel] = [
    Panel("Tokens per second by category", "tokens/s", (
        Target(_rate("prompt_tokens", "category"), "prompt {{category}}"),
        Target(_rate("completion_tokens", "category"), "completion {{category}}"),
    ), "Teacher tokens, prompt against completion; the bill follows these lines."),
    Panel("Accepted rows per second", "rows/s", (
        Target(_rate("rows_committed", "category"), "{{category}}"),
    ), "Rows made durable by a manifest commit."),
    Panel("Stage funnel (candidates per second)", "candidates/s", (
        Target(_rate("candidates", "stage"), "{{stage}}"),
    ), "Candidates passing each stage: generated, parsed, novel, judged, written."),
    Panel("Stage funnel over the time range", "candidates", (
        Target(f"sum by (stage) (increase({sel('candidates')}[{RANGE}]))", "{{stage}}"),
    ), "How many candidates reached each stage in the selected time range.", kind="bargauge"),
    Panel("Rejects per second by reason", "candidates/s", (
        Target(_rate("rejects", "stage, reason"), "{{stage}}: {{reason}}"),
    ), "Candidates dropped, by the stage that dropped them and why."),
    Panel("Teacher requests per second by status", "requests/s", (
        Target(_rate("requests", "status_class"), "{{status_class}}"),
    ), "Every request attempt, retries included, by outcome."),
    Panel("429 ratio", "ratio", (
        Target(f"({_THROTTLED} or vector(0)) / {_ALL_REQUESTS}", "429 / all"),
        Target(f"({_FAILED} or vector(0)) / {_ALL_REQUESTS}", "other failures / all"),
    ), "Share of requests the provider throttled; the rate limiter backs off while this is above zero."),
    Panel("Teacher latency p50 / p95 / p99", "seconds",
          _quantiles("request_latency_seconds", "model"), "Wall time of one request attempt."),
    Panel("In flight vs queue depth", "short", (
        Target(f"sum by (model) ({sel('requests_in_flight')})", "in flight {{model}}"),
        Target(f"max by (queue) ({sel('queue_depth')})", "queue {{queue}}"),
    ), "Requests waiting on the teacher against items waiting between stages: which side is the bottleneck."),
    Panel("Rate-limit concurrency", "requests", (
        Target(f"max by (model) ({sel('ratelimit_concurrency')})", "allowed {{model}}"),
        Target(f"sum by (model) ({sel('requests_in_flight')})", "in flight {{model}}"),
    ), "Concurrency the adaptive limiter allows against what is in use."),
    Panel("Novelty index size per shard", "vectors", (
        Target(f"max by (shard) ({sel('novelty_vectors')})", "shard {{shard}}"),
        Target(f"sum(max by (shard) ({sel('novelty_vectors')}))", "all shards"),
    ), "Flat search slows down past ~100k vectors per shard; add shards before that."),
    Panel("Commit latency p50 / p95 / p99", "seconds",
          _quantiles("commit_latency_seconds"), "Time to write one part and commit the manifest."),
    Panel("Commit lag", "seconds", (
        Target(f"time() - max({sel('last_commit_timestamp_seconds')})", "since last commit"),
    ), "Seconds since the last manifest commit; what a crash now would have to redo."),
    Panel("Tokens per committed row", "tokens", (
        Target(f"({_increase('prompt_tokens')} + {_increase('completion_tokens')}) / {_increase('rows_committed')}",
               "paid per row"),
        Target(f"{_increase('row_tokens')} / {_increase('rows_committed')}", "the rows' own (minimum)"),
    ), "Every teacher token over the time range per row committed, against what the committed rows cost "
       "themselves; the gap is rejected and surplus work."),
    Panel("Share of tokens on rejected or surplus work", "ratio", (
        Target(f"1 - {_increase('row_tokens')} / ({_increase('prompt_tokens')} + {_increase('completion_tokens')})",
               "wasted share"),
    ), "Tokens that bought no committed row: rejected candidates, surplus answers, failed replies, topics."),
    Panel("Cost per committed row (USD)", "USD", (
        Target(f"sum(max by (model) ({sel('cost_spent_usd')})) / sum({sel('rows_committed')})", "USD per row"),
    ), "Set only when teacher.budget.prices has the model's price."),
    Panel("Budget left (tokens)", "tokens", (
        Target(f"min({sel('budget_remaining_tokens')})", "tokens left"),
    ), "Set only when teacher.budget.max_tokens_total is configured."),
    Panel("Budget left (USD)", "USD", (
        Target(f"min({sel('budget_remaining_usd')})", "USD left"),
    ), "Set only when teacher.budget.max_cost_usd is configured."),
]


def _variable(name: str, label: str, description: str, query: str) -> dict[str, Any]:
    return {
        "name": name, "label": label, "description": description, "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "definition": query, "query": {"query": query, "refId": f"{name}Query"},
        "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0,
    }


def _templating() -> list[dict[str, Any]]:
    probe = get_spec("candidates").exported
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "description": "The Prometheus that scrapes the Ray nodes' metrics port.", "hide": 0,
         "current": {}, "refresh": 1},
        _variable("Cluster", "Cluster", "Ray cluster (the ray_io_cluster label set by the KubeRay PodMonitor).",
                  f"label_values({probe}, ray_io_cluster)"),
        _variable("SessionName", "Session", "Ray session (one per `ray start`).",
                  f'label_values({probe}{{ray_io_cluster=~"$Cluster"}}, SessionName)'),
        _variable("Category", "Category", "Instruction category.",
                  f'label_values({probe}{{ray_io_cluster=~"$Cluster",SessionName=~"$SessionName"}}, category)'),
    ]


def _grafana_panel(panel: Panel, index: int) -> dict[str, Any]:
    ds = {"type": "prometheus", "uid": "${datasource}"}
    unit = _GRAFANA_UNITS.get(panel.unit, f"suffix: {panel.unit}")
    options: dict[str, Any] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                               "tooltip": {"mode": "multi", "sort": "desc"}}
    if panel.kind == "bargauge":
        options = {"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return {
        "id": index + 1, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": ds, "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []}, "options": options,
        "targets": [
            {"datasource": ds, "expr": t.expr, "legendFormat": t.legend, "refId": chr(ord("A") + i),
             **({"instant": True, "range": False} if panel.kind == "bargauge" else {"range": True})}
            for i, t in enumerate(panel.targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    """The whole Grafana dashboard as a JSON-ready dict (deterministic: no timestamps, no versions)."""
    return {
        "uid": "instructflow", "title": "instructflow", "tags": ["instructflow", "ray"],
        "description": "Synthetic instruction data generation: tokens, funnel, rejects, teacher health, commits, budget.",
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": _templating()},
        "panels": [_grafana_panel(p, i) for i, p in enumerate(PANELS)],
    }


def render_json() -> str:
    """The dashboard file's exact text."""
    return json.dumps(dashboard(), indent=2) + "\n"


def panel_queries(rate_interval: str = "1m", time_range: str = "1h") -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with the template variables filled for a plain Prometheus.

    A panel with several targets yields several tuples with the same title.
    """
    out = []
    for panel in PANELS:
        for target in panel.targets:
            expr = target.expr.replace(RATE, rate_interval).replace(RANGE, time_range)
            for var, value in PLAIN_PROMETHEUS.items():
                expr = expr.replace(var, value)
            out.append((panel.title, expr))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _without_filters(expr: str) -> str:
    """The query as a reader wants it: the dashboard-wide filters left out."""
    for matcher in ('SessionName=~"$SessionName"', 'ray_io_cluster=~"$Cluster"', 'category=~"$Category"'):
        expr = expr.replace(matcher + ",", "").replace(matcher, "")
    return expr.replace(",}", "}").replace("{}", "")


def markdown_panels() -> str:
    """The panel list as a Markdown table (title, query, unit) for docs/operations.md.

    Queries are shown without the filters every selector carries (session, cluster, category).
    """
    rows = ["| Panel | Query | Unit |", "|---|---|---|"]
    for panel in PANELS:
        queries = "<br>".join(f"`{_cell(_without_filters(t.expr))}`" for t in panel.targets)
        rows.append(f"| {panel.title} | {queries} | {panel.unit} |")
    return "\n".join(rows) + "\n"


def markdown_metrics() -> str:
    """The metric reference (from METRICS) as a Markdown table for docs/operations.md."""
    rows = ["| Exported name | Type | Unit | Labels | Meaning |", "|---|---|---|---|---|"]
    for spec in METRICS:
        labels = ", ".join(spec.labels) or "—"
        rows.append(f"| `{spec.exported}` | {spec.kind} | {spec.unit} | {labels} | {spec.description} |")
    return "\n".join(rows) + "\n"


def update_docs(text: str) -> str:
    """Replaces the `<!-- BEGIN generated:panels|metrics -->` blocks of a Markdown page."""
    for marker, table in (("panels", markdown_panels()), ("metrics", markdown_metrics())):
        pattern = re.compile(rf"(<!-- BEGIN generated:{marker} -->\n).*?(<!-- END generated:{marker} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"no generated:{marker} block")
        text = pattern.sub(lambda m, t=table: m.group(1) + t + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    """Command line: write the dashboard JSON, check it, or print a docs table."""
    parser = argparse.ArgumentParser(prog="python -m instructflow.cluster.dashboard", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", type=Path, help=f"write the dashboard JSON here (e.g. {DEFAULT_OUT})")
    group.add_argument("--check", type=Path, help="exit 1 if this file differs from a fresh generation")
    group.add_argument("--markdown", action="store_true", help="print the panel table (title, query, unit)")
    group.add_argument("--metrics-markdown", action="store_true", help="print the metric reference table")
    group.add_argument("--docs", type=Path, help="rewrite the generated tables in this Markdown page")
    args = parser.parse_args(argv)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render_json(), encoding="utf-8")
    elif args.check:
        if not args.check.exists() or args.check.read_text(encoding="utf-8") != render_json():
            print(f"{args.check} is stale; regenerate with --out {args.check}", file=sys.stderr)
            return 1
    elif args.docs:
        args.docs.write_text(update_docs(args.docs.read_text(encoding="utf-8")), encoding="utf-8")
    elif args.metrics_markdown:
        sys.stdout.write(markdown_metrics())
    elif args.markdown:
        sys.stdout.write(markdown_panels())
    else:
        sys.stdout.write(render_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
