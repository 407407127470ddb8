"""The README's `ray job submit` command against a real `ray start --head` on 127.0.0.1."""

from __future__ import annotations

import sys

import pyarrow.parquet as pq
import pytest
import yaml

from tests.integration.conftest import stub_config
from tests.integration.raycluster import LocalHead

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    with LocalHead(tmp_path_factory.mktemp("head")) as head:
        yield head


def test_job_submit_generates_the_dataset(head, stub_teacher, tmp_path):
    out = tmp_path / "out"
    data = stub_config(stub_teacher, out, {"general": {"count": 10}, "trivia": {"count": 10}})
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(data))
    done = head.submit_when_ready([sys.executable, "-m", "instructflow.cluster.cli", "generate", "--config", str(config)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "summary (complete)" in done.stdout
    rows = pq.read_table(out / "data").to_pylist()
    assert sorted(r["category"] for r in rows) == ["general"] * 10 + ["trivia"] * 10
