"""Fixtures for integration tests: one local Ray per session and a stub teacher per module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml


def start_local_ray() -> None:
    """Starts the local Ray that `ray_local` shares (also used to bring it back after a test that
    had to replace it, such as the multi-node one)."""
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, namespace="instructflow", logging_level="WARNING")


@pytest.fixture(scope="package")
def ray_local():
    """A real local Ray shared by the integration tests (starting one costs ~5 s on two cores);
    shut down after the package so unit tests can start their own."""
    import ray

    start_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def stub_teacher():
    from instructflow.instructors.teacher.stub import StubTeacher

    with StubTeacher(seed=7, latency_s=0.02) as stub:
        yield stub


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def stub_config(stub: Any, output_dir: Path, categories: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A run config pointed at the stub teacher, small and fast."""
    data: dict[str, Any] = {
        "run": {"output_dir": str(output_dir), "display": "plain", "drain_timeout_s": 20},
        "teacher": {"kind": "openai", "base_url": stub.base_url, "model": "stub", "api_key_env": None,
                    "timeout_s": 5, "max_attempts": 4, "backoff_base_s": 0.05, "backoff_max_s": 0.5},
        "topics": {"file": None},
        "novelty": {"shards": 2, "batch_size": 32, "torch_threads": 1},
        "writer": {"rows_per_part": 16, "flush_interval_s": 0.5, "exports": ["jsonl", "sharegpt", "alpaca"]},
        "categories": categories,
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return data


def read_manifest(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]
