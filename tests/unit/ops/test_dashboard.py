"""The generated Grafana dashboard: committed file, queries, variables and docs tables."""

from __future__ import annotations

import json
import re

import pytest

from instructflow.actors.metrics import METRICS
from instructflow.cluster import dashboard
from instructflow.cluster.dashboard import PANELS, panel_queries, sel

from .k8s_checks import CHART, REPO

COMMITTED = CHART / "dashboards" / "instructflow.json"
SERIES = {series for spec in METRICS for series in spec.series()}
# A metric name directly followed by a label selector (every query goes through sel()).
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{")


def _exprs(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    return exprs + [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]


def test_committed_file_equals_a_fresh_generation() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == dashboard.render_json(), (
        f"stale; run: python -m instructflow.cluster.dashboard --out {COMMITTED.relative_to(REPO)}"
    )
    assert dashboard.main(["--check", str(COMMITTED)]) == 0


def test_check_flags_a_stale_file(tmp_path) -> None:
    stale = tmp_path / "d.json"
    stale.write_text(dashboard.render_json().replace("instructflow", "x", 1), encoding="utf-8")
    assert dashboard.main(["--check", str(stale)]) == 1
    assert dashboard.main(["--out", str(stale)]) == 0
    assert dashboard.main(["--check", str(stale)]) == 0


def test_every_query_names_only_exported_metrics() -> None:
    dash = json.loads(COMMITTED.read_text(encoding="utf-8"))
    for expr in _exprs(dash):
        # Every ray_/instructflow_ word outside label matchers is a metric, except the cluster label.
        names = set(re.findall(r"\b(?:ray|instructflow)_\w+", re.sub(r"\{[^}]*\}", "", expr)))
        names.discard("ray_io_cluster")
        assert names and names <= SERIES, f"{expr}: {names - SERIES}"


def test_panels_cover_the_operations_questions() -> None:
    titles = " | ".join(p.title for p in PANELS).lower()
    for topic in ("tokens per second", "accepted rows", "funnel", "rejects", "429", "latency p50 / p95 / p99",
                  "in flight vs queue depth", "shard", "commit latency", "commit lag", "budget", "rate-limit"):
        assert topic in titles, topic
    used = {s for _, q in panel_queries() for s in SELECTOR.findall(q)}
    unshown = {spec.key for spec in METRICS if not set(spec.series()) & used}
    assert not unshown, f"metrics no panel shows: {unshown}"


def test_template_variables_follow_rays_dashboards() -> None:
    dash = dashboard.dashboard()
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names[:3] == ["datasource", "Cluster", "SessionName"]
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert 'SessionName=~"$SessionName"' in target["expr"]
            assert 'ray_io_cluster=~"$Cluster"' in target["expr"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_panel_queries_fill_every_variable_for_plain_prometheus() -> None:
    queries = panel_queries(rate_interval="30s", time_range="10m")
    assert len(queries) == sum(len(p.targets) for p in PANELS)
    for title, query in queries:
        assert "$" not in query, (title, query)
        assert query.count("(") == query.count(")") and query.count("{") == query.count("}")
    assert any("[30s]" in q for _, q in queries) and any("[10m]" in q for _, q in queries)


def test_sel_rejects_what_is_not_exported() -> None:
    with pytest.raises(KeyError):
        sel("tokens")
    with pytest.raises(ValueError, match="not a series"):
        sel("candidates", "_bucket")
    with pytest.raises(ValueError, match="no label"):
        sel("queue_depth", model='="m"')
    assert sel("request_latency_seconds", "_bucket").startswith("ray_instructflow_request_latency_seconds_bucket{")


def test_markdown_tables_list_every_panel_and_metric() -> None:
    panels, metric_table = dashboard.markdown_panels(), dashboard.markdown_metrics()
    assert all(f"| {p.title} |" in panels for p in PANELS)
    assert all(f"`{s.exported}`" in metric_table for s in METRICS)
    assert "$SessionName" not in panels  # filters are described once, not repeated per query


@pytest.mark.parametrize("marker, render", [
    ("panels", dashboard.markdown_panels), ("metrics", dashboard.markdown_metrics),
])
def test_operations_doc_embeds_the_generated_tables(marker: str, render) -> None:
    doc = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- BEGIN generated:{marker} -->\n(.*?)<!-- END generated:{marker} -->", doc, re.S)
    assert match, f"docs/operations.md lacks the generated:{marker} block"
    assert match.group(1) == render(), "refresh: python -m instructflow.cluster.dashboard --docs docs/operations.md"


def test_update_docs_refuses_a_page_without_the_blocks() -> None:
    with pytest.raises(ValueError, match="generated:panels"):
        dashboard.update_docs("# no tables here\n")
