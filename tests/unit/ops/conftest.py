"""Fixtures for the ops tests (chart, manifests, dashboard, metrics)."""

from __future__ import annotations

import pytest

from .k8s_checks import K8sValidator


@pytest.fixture(scope="session")
def k8s() -> K8sValidator:
    """The offline validator; skips when ../shared/k8s/crds is missing."""
    return K8sValidator()
