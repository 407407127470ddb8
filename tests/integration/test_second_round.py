"""The second round, streamed: `editor` consumes committed `writing` rows while `writing` still runs
(no barrier), an interrupted run resumes to exact counts, and no source row is used twice."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster.driver import run
from instructflow.config import parse_config
from tests.integration.conftest import read_manifest, stub_config

pytestmark = [pytest.mark.ray]

WRITING, EDITOR = 8, 4


def committed(out: Path) -> Counter[str]:
    total: Counter[str] = Counter()
    if (out / "manifest.jsonl").exists():
        for entry in read_manifest(out):
            total.update(entry["categories"])
    return total


def interrupt_on_first_editor_row(out: Path, stop: threading.Event, seen: list[Counter[str]]) -> None:
    """Sends the driver one SIGINT (a Ctrl-C: drain, commit, return) once an editor row is committed."""
    while not stop.wait(0.1):
        counts = committed(out)
        if counts["editor"]:
            seen.append(counts)
            os.kill(os.getpid(), signal.SIGINT)
            return


def test_editor_streams_on_committed_writing_and_resumes_without_reusing_a_source(ray_local, stub_teacher, tmp_path):
    out = tmp_path / "out"
    stub_teacher.set_faults(latency_s=0.4)  # writing rows trickle in (two calls each, one at a time)
    data = stub_config(
        stub_teacher, out,
        {"writing": {"count": WRITING, "batch_size": 1, "concurrency": 1}, "editor": {"count": EDITOR, "concurrency": 1}},
        writer={"rows_per_part": 1, "flush_interval_s": 0.2},
    )
    config = parse_config(yaml.safe_dump(data))
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=interrupt_on_first_editor_row, args=(out, stop, seen), daemon=True)
    watcher.start()
    try:
        first = run(config)  # interrupted: drains and returns
    finally:
        stop.set()
        watcher.join(5)
        stub_teacher.set_faults(latency_s=0.02)
    assert seen and seen[0]["writing"] < WRITING, f"the editor waited for every writing row: {seen}"
    before = committed(out)  # what the drain let finish; the rest is the resumed run's
    assert before["editor"] >= 1 and before["writing"] < WRITING, before

    final = run(config)  # the same config again: resumes
    assert final.committed["writing"] == WRITING and final.committed["editor"] == EDITOR
    rows = pq.read_table(out / "data").to_pylist()
    assert Counter(r["category"] for r in rows) == {"writing": WRITING, "editor": EDITOR}
    writing = {r["id"]: r for r in rows if r["category"] == "writing"}
    sources = [r["source_id"] for r in rows if r["category"] == "editor"]
    assert len(set(sources)) == EDITOR and set(sources) <= set(writing), "a source reused, or not a writing row"
    for row in rows:
        if row["category"] == "editor":
            assert row["instruction"] != row["response"] and writing[row["source_id"]]["response"] != row["instruction"]
    # No barrier in the manifest either: an editor part comes before the part that completed writing.
    entries = read_manifest(out)
    done_at = next(i for i in range(len(entries)) if sum(e["categories"].get("writing", 0) for e in entries[: i + 1]) == WRITING)
    assert any("editor" in e["categories"] for e in entries[:done_at])
    assert first.books.rejected_in("editor") == 0
