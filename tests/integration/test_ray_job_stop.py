"""The README's `ray job submit` against a real `ray start --head` on 127.0.0.1 (one head for the
module: starting one costs ~15 s of the suite): `ray job stop` on a running job drains it on
SIGTERM, what it committed is intact, and the same `ray job submit` again resumes from the manifest
and generates the dataset to its target."""

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

# About 3 rows/s against a 0.5 s teacher with two slots: the target would take ~20 s of generation.
# Once the first part is committed the stub stops answering anything it has not started (`HOLD`), so
# the job cannot reach the target however slowly the stop lands: at most the two answer calls
# already in flight still finish. A 2 s drain then commits what reached the writer.
TARGET = 60
CONCURRENCY = 2
DRAIN_S = 2
HOLD = {"p_hang": 1.0, "hang_max_s": 600}
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


SUMMARY_COLUMNS = ("category", "committed", "target", "generated", "accepted", "rejected", "dropped", "lost",
                   "in flight", "rows/s")


def summary_row(logs: str, category: str) -> dict[str, str]:
    """The category's row of the driver's summary table (cells by column name)."""
    for line in logs.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line)[1:-1]]
        if len(cells) == len(SUMMARY_COLUMNS) and cells[0] == category:
            return dict(zip(SUMMARY_COLUMNS, cells, strict=True))
    raise AssertionError(f"no summary row for {category}:\n{logs[-3000:]}")


def test_stopped_job_keeps_its_commits_and_the_same_submit_resumes(head, slow_teacher, tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "job.yaml"
    cats = {"general": {"count": TARGET, "batch_size": 4, "concurrency": CONCURRENCY}}
    data = stub_config(slow_teacher, out, cats, run={"drain_timeout_s": DRAIN_S}, novelty={"shards": 1})
    config.write_text(yaml.safe_dump(data))
    entrypoint = [sys.executable, "-m", "instructflow.cluster.cli", "generate", "--config", str(config)]
    job = f"stop-{uuid.uuid4().hex[:8]}"

    started = time.monotonic()
    submitted = head.submit_when_ready(entrypoint, wait=False, submission_id=job)
    assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
    wait_for_commit(head, job, out)
    slow_teacher.set_faults(**HOLD)  # from here on the job cannot reach its target
    try:
        held_at = sum(e["rows"] for e in read_manifest(out))
        status = head.job_status(job)
        assert status == "RUNNING" and held_at < TARGET - CONCURRENCY, f"{status} with {held_at} rows committed"
        stopping = time.monotonic()
        head.ray("job", "stop", "--address", head.dashboard, "--no-wait", job)
        status = head.wait_job(job, timeout_s=90)
        stop_s = time.monotonic() - stopping
    finally:
        # Answering again, and fast: the resumed job has nothing left to prove by being slow.
        slow_teacher.set_faults(p_hang=0.0, latency_s=0.05)
    logs = head.job_logs(job)
    assert status == "STOPPED", f"{status}:\n{logs[-3000:]}"
    assert "stopping: interrupted" in logs and "summary (interrupted)" in logs, logs[-3000:]

    # The drain committed every row that reached the writer, and only whole, unique parts.
    first = check_parts(out)
    committed = sum(e["rows"] for e in read_manifest(out))
    row = summary_row(logs, "general")
    assert int(row["committed"]) == int(row["accepted"]) == committed, row
    assert held_at <= committed < TARGET, (held_at, committed)
    print(f"\nfirst run: {time.monotonic() - started:.0f} s to its first commit and stop; stopped in "
          f"{stop_s:.1f} s with {committed} rows in {len(first)} parts ({held_at} when the teacher stopped answering)")

    resuming = time.monotonic()
    again = head.submit_when_ready(entrypoint, submission_id=f"{job}-again")
    print(f"resumed run: {time.monotonic() - resuming:.0f} s")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "summary (complete)" in again.stdout, again.stdout[-3000:]
    # The console may wrap the note, so any whitespace separates its words.
    resumed = re.search(r"resuming:\s+(\d+)\s+rows\s+committed", again.stdout)
    assert resumed and int(resumed.group(1)) == committed, again.stdout[-3000:]

    parts = check_parts(out)
    assert sum(e["rows"] for e in read_manifest(out)) == TARGET
    assert pq.read_table(out / "data").num_rows == TARGET
    for name, data in first.items():
        assert parts[name] == data, f"{name} changed after the resumed run"
