"""Offline Kubernetes checks for the chart and the static manifests.

RayJob and RayCluster objects are validated against the KubeRay CRDs' `openAPIV3Schema` from
../shared/k8s/crds (made strict: an unknown field is an error, as with `kubectl --validate=strict`,
instead of being silently pruned by the API server). Built-in kinds go through kubernetes-validate's
bundled strict schemas, and so does every Ray pod template (as a v1 PodTemplate). The PodMonitor CRD
is not available offline, so it is checked against a small schema of the fields the chart uses.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO / ".." / "shared"
CRD_DIR = SHARED / "k8s" / "crds"
CHART = REPO / "helm" / "instructflow"
KUBE_VERSION = "1.31.0"  # a release most managed clusters still run; the objects used are stable
RAY_KINDS = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
PODMONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                    "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
                "selector": {"type": "object", "additionalProperties": False, "minProperties": 1,
                             "properties": {"matchLabels": _STR_MAP, "matchExpressions": {"type": "array"}}},
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["port"],
                    "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"}, "interval": {"type": "string"},
                        "relabelings": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False,
                            "properties": {"sourceLabels": {"type": "array", "items": {"type": "string"}},
                                           "targetLabel": {"type": "string"}, "action": {"type": "string"},
                                           "regex": {"type": "string"}, "replacement": {"type": "string"}}}},
                    }}},
            },
        },
    },
}


def _strict(schema: Any) -> Any:
    """Adds additionalProperties: false wherever a CRD lists properties and allows nothing else."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_validator(path: Path) -> jsonschema.Draft7Validator:
    crd = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def _errors(validator: jsonschema.protocols.Validator, obj: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message[:300]}"
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


def pod_templates(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, pod template) for the head and every worker group of a RayJob or RayCluster."""
    spec = obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]
    yield "head", spec["headGroupSpec"]["template"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["groupName"], group["template"]


class K8sValidator:
    """Validates one parsed object; `check` returns a list of problems (empty when valid)."""

    def __init__(self) -> None:
        if not CRD_DIR.is_dir():
            pytest.skip(f"KubeRay CRDs not found at {CRD_DIR.resolve()} (shared/ must sit beside the clone)")
        self.crds = {kind: _crd_validator(CRD_DIR / name) for kind, name in RAY_KINDS.items()}
        self.podmonitor = jsonschema.Draft7Validator(PODMONITOR_SCHEMA)

    def check(self, obj: dict[str, Any]) -> list[str]:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("kind") in self.crds:
            problems = _errors(self.crds[obj["kind"]], obj)
            for group, template in pod_templates(obj):
                wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": group},
                           "template": copy.deepcopy(template)}
                problems += [f"pod template {group}: {p}" for p in _builtin(wrapped)]
        elif obj.get("kind") == "PodMonitor":
            problems = _errors(self.podmonitor, obj)
        else:
            problems = _builtin(obj)
        return [f"{name}: {p}" for p in problems]


def _builtin(obj: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(str(p) for p in err.path) or '(root)'}: {err.message[:300]}"]
    return []


def load_docs(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document in a multi-document string."""
    return [d for d in yaml.load_all(text, Loader=_Loader) if d]


def render_chart(values: dict[str, Any] | None = None, name: str = "instructflow",
                 namespace: str = "default") -> list[dict[str, Any]]:
    """The chart rendered offline with helm-python-sdk: every object, in template-path order."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=name, namespace=namespace)
    return [doc for path, text in sorted(out.items()) if path.endswith(".yaml") for doc in load_docs(text)]


def find(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [o for o in objs if o.get("kind") == kind]


def gpu_values() -> dict[str, Any]:
    """The chart's GPU variant values (helm/instructflow/ci/gpu-values.yaml)."""
    return yaml.safe_load((CHART / "ci" / "gpu-values.yaml").read_text(encoding="utf-8"))
