"""One synthetic run and its report with a reference set, shared by the tests that only read them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from instructflow.report.build import Report, write_report
from tests.unit.report.runs import hashing_encoder, make_run, write_seed_tasks


@dataclass
class Built:
    made: dict
    report: Report


@pytest.fixture(scope="session")
def built_report(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A 200-row run with near-duplicate clusters of 6, 4 and 3 rows, reported side by side with
    30 Self-Instruct-style seed tasks (embedded by a hashing stand-in for the novelty model)."""
    root = tmp_path_factory.mktemp("report")
    made = make_run(root / "run", rows=200, clusters=(6, 4, 3))
    reference = write_seed_tasks(root / "seed_tasks.jsonl", tasks=30)
    return Built(made, write_report(str(root / "run"), compare=str(reference), encoder=hashing_encoder))
