"""The helm chart: lint, render offline for the default and GPU values, validate every object."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)

from .k8s_checks import CHART, find, gpu_values, render_chart
from .layout import assert_job_wiring, assert_layout, run_config

helm = pytest.importorskip("helm_python")

DEV = {"rayJob": {"enabled": False}, "rayCluster": {"enabled": True}}
OBJECT_STORE = {"output": {"uri": "s3://bucket/instructflow/run-1"},
                "teacher": {"apiKeySecret": {"name": "teacher-api"}}}
VARIANTS: dict[str, dict[str, Any] | None] = {
    "default": None, "gpu": gpu_values(), "dev-cluster": DEV, "object-store": OBJECT_STORE,
    "no-embedding-group": {"embedding": {"enabled": False}},
}


@pytest.mark.parametrize("values", [None, gpu_values()], ids=["default", "gpu"])
def test_lint_is_clean(values: dict[str, Any] | None) -> None:
    report = helm.lint(str(CHART), values, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 1 is "info" (no icon)
    assert not report["errors"] and not problems, report


@pytest.mark.parametrize("name", VARIANTS)
def test_every_rendered_object_validates(name: str, k8s: Any) -> None:
    objs = render_chart(VARIANTS[name])
    assert objs
    problems = [p for obj in objs for p in k8s.check(obj)]
    assert not problems, "\n".join(problems)


def test_default_renders_a_job_with_its_config_volume_monitor_and_dashboard() -> None:
    objs = render_chart()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["ConfigMap", "ConfigMap", "PersistentVolumeClaim", "PodMonitor", "RayJob"]
    (job,) = find(objs, "RayJob")
    assert_layout(job)
    assert_job_wiring(job, objs)
    (pvc,) = find(objs, "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_gpu_variant_puts_gpus_on_the_embedding_group_only() -> None:
    objs = render_chart(gpu_values())
    (job,) = find(objs, "RayJob")
    assert_layout(job, gpus=1)
    assert_job_wiring(job, objs)
    groups = {g["groupName"]: g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    container = groups["embedding"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"].endswith(":0.1.0-cuda")
    assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert run_config(objs)["novelty"]["batch_size"] == 256


def test_dev_variant_renders_a_cluster_and_no_job() -> None:
    objs = render_chart(DEV)
    assert not find(objs, "RayJob")
    (cluster,) = find(objs, "RayCluster")
    assert_layout(cluster)


def test_object_store_output_mounts_no_volume_and_reads_the_key_from_a_secret() -> None:
    objs = render_chart(OBJECT_STORE)
    assert not find(objs, "PersistentVolumeClaim")
    assert run_config(objs)["run"]["output_dir"] == "s3://bucket/instructflow/run-1"
    (job,) = find(objs, "RayJob")
    assert_job_wiring(job, objs)
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert "output" not in {v["name"] for v in head["volumes"]}
    env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "teacher-api", "key": "api-key"}


def test_podmonitor_selects_the_ray_pods_and_adds_the_cluster_label() -> None:
    objs = render_chart(name="gen")
    (monitor,) = find(objs, "PodMonitor")
    (job,) = find(objs, "RayJob")
    selector = monitor["spec"]["selector"]["matchLabels"]
    spec = job["spec"]["rayClusterSpec"]
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for template in templates:
        assert selector.items() <= template["metadata"]["labels"].items()
        ports = template["spec"]["containers"][0]["ports"]
        assert {"containerPort": 8080, "name": "metrics"} in ports
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "metrics"
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
            "targetLabel": "ray_io_cluster"} in endpoint["relabelings"]


def test_dashboard_configmap_carries_the_committed_dashboard_for_the_sidecar() -> None:
    (cm,) = [o for o in find(render_chart(), "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = json.loads((CHART / "dashboards" / "instructflow.json").read_text(encoding="utf-8"))
    assert json.loads(cm["data"]["instructflow.json"]) == committed


def test_rendered_run_config_loads_with_instructflow() -> None:
    from instructflow.config import Novelty, parse_config

    if "resource" not in Novelty.model_fields:
        pytest.skip("config has no novelty.resource yet (the pipeline side of the embedding group)")
    for values in (None, gpu_values()):
        text = yaml.safe_dump(run_config(render_chart(values)))
        config = parse_config(text, "run.yaml")
        assert config.novelty.resource == "novelty"


@pytest.mark.parametrize("values, message", [
    ({"worker": {"replcas": 3}}, "replcas"),
    ({"embedding": {"resourceName": "not a name"}}, "resourceName"),
    ({"output": {"uri": "bucket/without/scheme"}}, "uri"),
    ({"worker": {"minReplicas": 5, "replicas": 1}}, "minReplicas <= replicas"),
    ({"rayJob": {"stopWaitTimeS": 30}}, "must exceed runConfig.run.drain_timeout_s"),
])
def test_bad_values_fail_with_a_message_naming_them(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render_chart(values)
