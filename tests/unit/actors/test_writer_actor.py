"""The writer actor shell on a real local Ray: pumping from the queue, and surviving its own death."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from instructflow.instructors.record import Candidate

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_session():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


def cand(i: int) -> Candidate:
    return Candidate(category="general", instruction=f"Actor row {i}", response=f"answer {i}")


def committed_ids(root: Path) -> list[str]:
    import pyarrow.parquet as pq

    files = [json.loads(line)["file"] for line in (root / "manifest.jsonl").read_text().splitlines()]
    return [i for f in files for i in pq.read_table(root / f, columns=["id"]).column("id").to_pylist()]


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def test_pump_commits_rows_and_a_killed_writer_resumes_from_the_manifest(ray_session, tmp_path: Path) -> None:
    ray = ray_session
    from instructflow.actors.queue import QueueActor
    from instructflow.actors.writer import WriterActor

    queue = QueueActor.remote("writer", 64)
    writer = WriterActor.remote(str(tmp_path), targets={"general": 30}, rows_per_part=4, flush_interval_s=60,
                                exports=["jsonl", "alpaca"])
    pump = writer.pump.remote(queue, 8, 0.1)
    ray.get(queue.put_batch.remote([cand(i) for i in range(10)]))
    wait_for(lambda: ray.get(writer.stats.remote())["accepted"]["general"] == 10, "10 accepted rows")
    assert ray.get(writer.flush.remote()) == 2  # 8 were committed as full parts already
    writer.reject.remote([(cand(99), "near_duplicate")])
    ray.kill(writer, no_restart=False)  # dies; Ray restarts it and re-runs the pump on the new one
    ray.get(queue.put_batch.remote([cand(i) for i in range(5, 25)]))  # 5..9 again: already committed
    wait_for(lambda: ray.get(queue.stats.remote())["depth"] == 0, "the restarted pump to drain the queue")
    # A batch the dead pump had already taken is lost in transit; the pipeline regenerates such rows.
    ray.get(queue.put_batch.remote([cand(i) for i in range(25)]))
    wait_for(lambda: ray.get(writer.stats.remote())["accepted"]["general"] == 25, "25 accepted rows")
    assert ray.get(writer.stats.remote())["skipped"]["duplicate_id"] >= 10
    ray.get(queue.close.remote())
    assert ray.get(pump, timeout=30) == {"general": 25}
    assert ray.get(writer.done.remote()) is False
    written = ray.get(writer.close.remote())
    assert [Path(p).name for p in written] == ["alpaca.jsonl"]
    ids = committed_ids(tmp_path)
    assert len(ids) == len(set(ids)) == 25
    assert len((tmp_path / "instructions.jsonl").read_text().splitlines()) == 25
