"""Ctrl-C drains: producers stop, the writer commits, the process exits with a summary and every
committed part intact; running the same command again resumes and finishes."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml

from tests.integration.conftest import read_manifest, stub_config
from tests.integration.raycluster import stop_group

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def generate(config_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "instructflow.cluster.cli", "generate", "--config", str(config_path),
         "--address", "local", "--display", "plain"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def wait_for_commit(out, proc, timeout=180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "manifest.jsonl").exists() and read_manifest(out):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before its first commit:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no part committed within {timeout:.0f} s")


@pytest.mark.fault(fault="SIGINT (Ctrl-C) during a run", expected="drain, commit, summary, exit 1; rerun resumes to the target")
def test_ctrl_c_drains_and_a_rerun_resumes(stub_teacher, tmp_path):
    out = tmp_path / "out"
    stub_teacher.set_faults(latency_s=0.3)
    data = stub_config(stub_teacher, out, {"general": {"count": 60, "concurrency": 2}, "trivia": {"count": 60, "concurrency": 2}})
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(data))
    proc = generate(config)
    try:
        wait_for_commit(out, proc)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        stop_group(proc)
        stub_teacher.set_faults(latency_s=0.02)
    assert "stopping: interrupted" in output and "summary (interrupted)" in output, output[-3000:]
    assert proc.returncode == 1  # ended before the targets: not a success
    entries = read_manifest(out)
    first = {e["file"]: (out / e["file"]).read_bytes() for e in entries}
    for entry in entries:
        assert hashlib.sha256(first[entry["file"]]).hexdigest() == entry["sha256"]
    rows = pq.read_table(out / "data").num_rows
    assert rows == sum(e["rows"] for e in entries) and 0 < rows < 120

    rerun = generate(config)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    assert f"resuming: {rows} rows committed" in output
    table = pq.read_table(out / "data").to_pylist()
    assert sorted(r["category"] for r in table) == ["general"] * 60 + ["trivia"] * 60
    assert len({r["id"] for r in table}) == 120
    assert all((out / name).read_bytes() == blob for name, blob in first.items())
