"""The static manifests in cluster/k8s: valid, laid out for the pipeline, and equal to the chart."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .k8s_checks import REPO, find, load_docs, render_chart
from .layout import assert_job_wiring, assert_layout

MANIFESTS = {
    "rayjob.yaml": ("RayJob", None),
    "raycluster.yaml": ("RayCluster", {"rayJob": {"enabled": False}, "rayCluster": {"enabled": True}}),
}


def _load(name: str) -> list[dict[str, Any]]:
    return load_docs((REPO / "cluster" / "k8s" / name).read_text(encoding="utf-8"))


def test_the_folder_holds_only_the_known_manifests() -> None:
    found = {p.name for p in (REPO / "cluster" / "k8s").glob("*.yaml")}
    assert found == set(MANIFESTS)


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_validates(name: str, k8s: Any) -> None:
    objs = _load(name)
    assert [o["kind"] for o in objs] == ["ConfigMap", "PersistentVolumeClaim", MANIFESTS[name][0]]
    problems = [p for obj in objs for p in k8s.check(obj)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_layout(name: str) -> None:
    objs = _load(name)
    (ray,) = find(objs, MANIFESTS[name][0])
    assert_layout(ray)
    if ray["kind"] == "RayJob":
        assert_job_wiring(ray, objs)


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_equals_the_chart_rendering(name: str) -> None:
    """Same specs and config as `helm template instructflow helm/instructflow` (labels aside)."""
    kind, values = MANIFESTS[name]
    static, rendered = _load(name), render_chart(values)
    for wanted in (kind, "PersistentVolumeClaim"):
        (ours,) = find(static, wanted)
        (chart,) = find(rendered, wanted)
        assert ours["metadata"]["name"] == chart["metadata"]["name"]
        assert ours["spec"] == chart["spec"], f"{name}: {wanted} spec differs from the chart"
    (ours,) = find(static, "ConfigMap")
    (chart,) = [c for c in find(rendered, "ConfigMap") if "run.yaml" in c["data"]]
    assert ours["metadata"]["name"] == chart["metadata"]["name"]
    assert yaml.safe_load(ours["data"]["run.yaml"]) == yaml.safe_load(chart["data"]["run.yaml"])
