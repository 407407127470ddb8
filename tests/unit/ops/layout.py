"""Checks of what the pipeline needs from a Ray cluster spec, shared by the chart and manifest tests."""

from __future__ import annotations

from typing import Any

import yaml

NOVELTY_RESOURCE = "novelty"
ENTRYPOINT = "instructflow generate --config /config/run.yaml"


def cluster_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec of a RayJob or RayCluster object."""
    return obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]


def node_types(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Node types as Ray's own KubeRay autoscaler derives them from the spec (its parser, not ours)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    cr = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
          "metadata": {"name": "check", "namespace": "default"}, "spec": cluster_spec(obj)}
    return _derive_autoscaling_config_from_ray_cr(cr)["available_node_types"]


def assert_layout(obj: dict[str, Any], *, gpus: int = 0) -> None:
    """Head takes no work, the CPU group has CPUs only, the embedding group offers only `novelty`."""
    spec = cluster_spec(obj)
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    types = node_types(obj)
    assert types["headgroup"]["resources"]["CPU"] == 0, "the head must not run actors"
    cpu, embedding = types["cpu"], types["embedding"]
    assert cpu["resources"]["CPU"] > 0 and NOVELTY_RESOURCE not in cpu["resources"]
    assert embedding["resources"]["CPU"] == 0, "nothing but novelty work may land on the embedding group"
    assert embedding["resources"][NOVELTY_RESOURCE] >= 1
    assert embedding["resources"].get("GPU", 0) == gpus
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        assert group["maxReplicas"] >= 1


def run_config(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run config mounted at /config/run.yaml, parsed."""
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and "run.yaml" in o.get("data", {})]
    return yaml.safe_load(cm["data"]["run.yaml"])


def assert_job_wiring(job: dict[str, Any], objs: list[dict[str, Any]]) -> None:
    """Entrypoint, stop wait against drain, config and output volumes that exist."""
    assert job["spec"]["entrypoint"].startswith(ENTRYPOINT)
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    config = run_config(objs)
    assert int(env["RAY_JOB_STOP_WAIT_TIME_S"]) > config["run"]["drain_timeout_s"], "no time to drain"
    assert config["novelty"]["resource"] == NOVELTY_RESOURCE
    spec = cluster_spec(job)
    head = spec["headGroupSpec"]["template"]["spec"]
    assert head["terminationGracePeriodSeconds"] > int(env["RAY_JOB_STOP_WAIT_TIME_S"])
    assert_mounts(head, objs, config)
    (cpu,) = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "cpu"]
    assert_mounts(cpu["template"]["spec"], objs, config)


def assert_mounts(pod: dict[str, Any], objs: list[dict[str, Any]], config: dict[str, Any]) -> None:
    """The pod mounts the run config at /config and, unless output is a URI, the output claim."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    config_map = volumes[mounts["/config"]]["configMap"]["name"]
    assert any(o["kind"] == "ConfigMap" and o["metadata"]["name"] == config_map for o in objs)
    output_dir = config["run"]["output_dir"]
    if "://" in output_dir:
        return
    mount = next(path for path in mounts if output_dir.startswith(path + "/"))
    claim = volumes[mounts[mount]]["persistentVolumeClaim"]["claimName"]
    assert any(o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == claim for o in objs)
