"""`ray job stop` on a running generation job: the driver drains on SIGTERM, what it committed is
intact, and the same `ray job submit` again resumes from the manifest and finishes at the target."""

from __future__ import annotations

import hashlib
import re
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.integration.conftest import read_manifest, stub_config
from tests.integration.raycluster import LocalHead

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# About 3 rows/s against a 0.5 s teacher with two slots: the target takes ~20 s of generation, so
# the stop lands in the middle of the run. Instructions are generated well ahead of their answers,
# and a drain answers what is queued; a 2 s drain keeps the stopped run from finishing the target.
TARGET = 60
DRAIN_S = 2
TERMINAL = ("STOPPED", "SUCCEEDED", "FAILED")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    with LocalHead(tmp_path_factory.mktemp("head")) as head:
        yield head


@pytest.fixture(scope="module")
def slow_teacher():
    from instructflow.instructors.teacher.stub import StubTeacher

    with StubTeacher(seed=5, latency_s=0.5) as stub:
        yield stub


def wait_for_commit(head: LocalHead, job: str, out: Path, timeout_s: float = 150) -> None:
    """Waits until the manifest lists a part; fails early if the job ends before committing one."""
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + timeout_s
    # A complete line is a committed entry; the writer may be in the middle of appending the next.
    while not (manifest.exists() and "\n" in manifest.read_text()):
        status = head.job_status(job)
        assert status not in TERMINAL, f"job {status} before its first commit:\n{head.job_logs(job)[-3000:]}"
        assert time.monotonic() < deadline, f"no committed part within {timeout_s:.0f} s:\n{head.job_logs(job)[-3000:]}"
        time.sleep(0.5)


def check_parts(out: Path) -> dict[str, bytes]:
    """Asserts every manifest entry's part is readable and matches its hash and row count; ids are
    unique across parts. Returns each part's bytes by file name."""
    parts: dict[str, bytes] = {}
    ids: list[str] = []
    for entry in read_manifest(out):
        data = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
        part_ids = pq.read_table(out / entry["file"], columns=["id"]).column("id").to_pylist()
        assert len(part_ids) == entry["rows"], entry["file"]
        ids += part_ids
        parts[entry["file"]] = data
    assert len(ids) == len(set(ids)), "an id was committed twice"
    return parts


def test_stopped_job_keeps_its_commits_and_the_same_submit_resumes(head, slow_teacher, tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "job.yaml"
    cats = {"general": {"count": TARGET, "batch_size": 4, "concurrency": 2}}
    data = stub_config(slow_teacher, out, cats, run={"drain_timeout_s": DRAIN_S}, novelty={"shards": 1})
    config.write_text(yaml.safe_dump(data))
    entrypoint = [sys.executable, "-m", "instructflow.cluster.cli", "generate", "--config", str(config)]
    job = f"stop-{uuid.uuid4().hex[:8]}"

    started = time.monotonic()
    submitted = head.submit_when_ready(entrypoint, wait=False, submission_id=job)
    assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
    wait_for_commit(head, job, out)
    stopping = time.monotonic()
    head.ray("job", "stop", "--address", head.dashboard, "--no-wait", job)
    status = head.wait_job(job, timeout_s=90)
    stop_s = time.monotonic() - stopping
    logs = head.job_logs(job)
    # Either SIGTERM arrived mid-run (drain) or the job had just finished on its own.
    assert status == "STOPPED" and "stopping: interrupted" in logs or status == "SUCCEEDED", f"{status}:\n{logs[-3000:]}"
    assert "summary (" in logs, f"the driver did not finish its drain:\n{logs[-3000:]}"

    first = check_parts(out)
    committed = sum(e["rows"] for e in read_manifest(out))
    assert 0 < committed < TARGET or status == "SUCCEEDED"
    print(f"\nfirst run: {time.monotonic() - started:.0f} s to its first commit and stop; stopped in "
          f"{stop_s:.1f} s with {committed} rows in {len(first)} parts")

    resuming = time.monotonic()
    again = head.submit_when_ready(entrypoint, submission_id=f"{job}-again")
    print(f"resumed run: {time.monotonic() - resuming:.0f} s")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # The console may wrap the note, so any whitespace separates its words.
    resumed = re.search(r"resuming:\s+(\d+)\s+rows\s+committed", again.stdout)
    assert resumed and int(resumed.group(1)) == committed, again.stdout[-3000:]

    parts = check_parts(out)
    assert sum(e["rows"] for e in read_manifest(out)) == TARGET
    assert pq.read_table(out / "data").num_rows == TARGET
    for name, data in first.items():
        assert parts[name] == data, f"{name} changed after the resumed run"
