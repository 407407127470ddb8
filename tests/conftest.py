"""Shared test settings: offline model loading and a Ray that never asks for tokens or telemetry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import reliability

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Records the outcome of every `@pytest.mark.fault` test for docs/reliability.md."""
    report = yield
    reliability.record(item, report)
    return report
