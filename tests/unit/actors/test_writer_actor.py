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


def test_the_writer_stage_commits_rows_and_a_killed_writer_resumes_from_the_manifest(ray_session, tmp_path: Path) -> None:
    """The writer runs in the generic stage shell: it takes from its queue, records its outcome in
    the books (accepted, or dropped as a duplicate id), and a killed replica is rebuilt from its
    recipe and resumes from the manifest."""
    ray = ray_session
    import functools

    from instructflow.actors.queue import QueueActor
    from instructflow.actors.stage import LedgerActor, StageActor
    from instructflow.actors.writer import writer_stage

    names = {"input": "t/queue:writer", "ledger": "t/ledger"}
    queue = QueueActor.options(name=names["input"]).remote("writer", 64)
    books = LedgerActor.options(name=names["ledger"]).remote()
    recipe = functools.partial(writer_stage, str(tmp_path), targets={"general": 30}, rows_per_part=4,
                               flush_interval_s=60, exports=["jsonl", "alpaca"])
    writer = StageActor.options(name="t/writer:0").remote("writer:0", recipe, names)
    loop = writer.run.remote()

    def accepted() -> int:
        return ray.get(writer.stats.remote()).detail.accepted.get("general", 0)

    ray.get(queue.put_batch.remote([cand(i) for i in range(10)]))
    wait_for(lambda: accepted() == 10, "10 accepted rows")
    ray.get(writer.call.remote("log_rejects", [(cand(99), "near_duplicate")]))
    ray.kill(writer, no_restart=False)  # dies; Ray restarts it and re-runs its loop on the new one
    ray.get(queue.put_batch.remote([cand(i) for i in range(5, 25)]))  # 5..7 again: already committed
    wait_for(lambda: ray.get(queue.stats.remote()).depth == 0, "the restarted writer to drain the queue")
    ray.get(queue.put_batch.remote([cand(i) for i in range(25)]))  # whatever the dead one held, again
    wait_for(lambda: accepted() == 25, "25 accepted rows")
    ray.get(queue.close.remote())
    ray.get(loop, timeout=30)
    total = ray.get(books.snapshot.remote())[0]
    assert total.accepted == {}  # the writer's acceptance is read from the manifest, not the books
    # rows offered again once committed are dropped as duplicates, never written twice
    assert total.dropped[("general", "duplicate_id")] >= 3
    written = ray.get(writer.call.remote("close"))
    assert [Path(p).name for p in written] == ["alpaca.jsonl"]
    ids = committed_ids(tmp_path)
    assert len(ids) == len(set(ids)) == 25
    assert len((tmp_path / "instructions.jsonl").read_text().splitlines()) == 25
    for actor in (queue, books, writer):
        ray.kill(actor)
