"""PartWriter: the commit protocol, admission rules and recovery on reopen (local disk)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from instructflow.actors.core.manifest import PartEntry
from instructflow.actors.core.storage import LocalStore, OutputError
from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate


def cand(i: int, category: str = "general", *, system: str | None = None, dim: int = 8) -> Candidate:
    vector = np.random.default_rng(i).normal(size=dim).astype(np.float32)
    return Candidate(
        category=category,
        instruction=f"Explain item {i} in detail.",
        response=f"Item {i} is explained here.",
        system=system,
        model="stub",
        prompt_tokens=10 + i,
        completion_tokens=20 + i,
        template_digest="t1",
        similarity=0.5,
        embedding=vector / np.linalg.norm(vector),
    )


def manifest(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def parquet_ids(root: Path) -> list[str]:
    return pq.read_table(root / "data", columns=["id"]).column("id").to_pylist()


def test_flush_commits_numbered_parts_listed_in_the_manifest(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=3, run_id="run1")
    rows = [cand(i, "general" if i % 2 else "trivia") for i in range(7)]
    assert w.add(rows)["accepted"] == 7  # 3 + 3 committed by add (full parts), 1 pending
    assert w.stats()["pending_rows"] == 1
    assert w.flush() == 1
    assert sorted(os.listdir(tmp_path / "data")) == [f"part-00000{n}.parquet" for n in (1, 2, 3)]
    entries = manifest(tmp_path)
    assert [e["file"] for e in entries] == [f"data/part-00000{n}.parquet" for n in (1, 2, 3)]
    assert [e["rows"] for e in entries] == [3, 3, 1]
    for entry in entries:
        data = (tmp_path / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
        ids = pq.read_table(tmp_path / entry["file"]).column("id").to_pylist()
        assert (entry["min_id"], entry["max_id"]) == (min(ids), max(ids))
        assert entry["run_id"] == "run1" and datetime.fromisoformat(entry["created_at"]).tzinfo
    assert sum(e["categories"].get("general", 0) for e in entries) == 3
    assert sorted(parquet_ids(tmp_path)) == sorted(c.id for c in rows)
    assert w.counts() == {"general": 3, "trivia": 4}
    # What the committed rows cost themselves, for the cost per row (docs/output.md).
    assert w.stats()["kept_tokens"] == {
        cat: sum(c.prompt_tokens + c.completion_tokens for c in rows if c.category == cat) for cat in ("general", "trivia")
    }


def test_duplicate_ids_are_skipped_in_a_batch_while_pending_and_after_reopen(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=100)
    assert w.add([cand(1), cand(1), cand(2)]) == {"accepted": 2, "duplicate_id": 1, "over_target": 0, "unknown_category": 0}
    assert w.add([cand(2)])["duplicate_id"] == 1  # pending
    w.flush()
    assert w.add([cand(1)])["duplicate_id"] == 1  # committed
    reopened = PartWriter(str(tmp_path), rows_per_part=100)
    assert reopened.add([cand(1), cand(2), cand(3)])["duplicate_id"] == 2
    reopened.close()
    ids = parquet_ids(tmp_path)
    assert sorted(ids) == sorted({cand(i).id for i in (1, 2, 3)}) and len(ids) == 3


def test_targets_cap_committed_plus_pending_and_done(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), targets={"general": 2, "trivia": 1}, rows_per_part=100)
    got = w.add([cand(i) for i in range(4)] + [cand(9, "other")])
    assert got == {"accepted": 2, "duplicate_id": 0, "over_target": 2, "unknown_category": 1}
    assert not w.done() and w.counts() == {"general": 0, "trivia": 0}
    assert w.stats()["accepted"] == {"general": 2, "trivia": 0}
    w.add([cand(5, "trivia")])
    w.flush()
    assert w.done() and w.counts() == {"general": 2, "trivia": 1}
    again = PartWriter(str(tmp_path), targets={"general": 3, "trivia": 1})  # a raised target resumes
    assert again.add([cand(6), cand(7), cand(8, "trivia")])["over_target"] == 2
    assert PartWriter(str(tmp_path)).done() is False  # no targets: never "done"


def test_reopen_removes_orphans_and_keeps_committed_files(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=2)
    w.add([cand(i) for i in range(4)])
    committed = {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()}
    (tmp_path / "data" / ".part-000003.parquet.tmp-abcd1234").write_bytes(b"half a file")
    shutil.copy(tmp_path / "data" / "part-000001.parquet", tmp_path / "data" / "part-000009.parquet")
    (tmp_path / ".manifest.jsonl.tmp-00ff00ff").write_text("{}")
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / ".alpaca.jsonl.tmp-12345678").write_text("x")
    (tmp_path / "data" / "notes.txt").write_text("not ours; kept")
    reopened = PartWriter(str(tmp_path), rows_per_part=2)
    left = sorted(os.listdir(tmp_path / "data"))
    assert left == ["notes.txt", "part-000001.parquet", "part-000002.parquet"]
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n] and os.listdir(tmp_path / "exports") == []
    assert {n: (tmp_path / "data" / n).read_bytes() for n in committed} == committed
    reopened.add([cand(10)])
    reopened.flush()
    assert manifest(tmp_path)[-1]["file"] == "data/part-000003.parquet"  # continues after the highest


def test_torn_last_manifest_line_is_cut_away(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=2)
    w.add([cand(i) for i in range(4)])
    good = (tmp_path / "manifest.jsonl").read_bytes()
    with open(tmp_path / "manifest.jsonl", "ab") as f:
        f.write(b'{"file": "data/part-000003.parq')
    reopened = PartWriter(str(tmp_path), rows_per_part=2)
    assert (tmp_path / "manifest.jsonl").read_bytes() == good
    assert reopened.counts() == {"general": 4}
    reopened.add([cand(7), cand(8)])
    assert [e["rows"] for e in manifest(tmp_path)] == [2, 2, 2]


def test_corrupt_manifest_or_missing_part_refuses_to_open(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=1)
    w.add([cand(1), cand(2)])
    good = (tmp_path / "manifest.jsonl").read_bytes()
    first, second = good.splitlines(keepends=True)
    (tmp_path / "manifest.jsonl").write_bytes(b"garbage\n" + second)
    with pytest.raises(OutputError, match="line 1 is not a valid manifest entry"):
        PartWriter(str(tmp_path))
    (tmp_path / "manifest.jsonl").write_bytes(good)
    part = tmp_path / "data" / "part-000002.parquet"
    size = part.stat().st_size
    part.write_bytes(b"\0" * size)  # same size, zeroed: what a lost write-back can leave
    with pytest.raises(OutputError, match=r"part-000002\.parquet: committed part is unreadable"):
        PartWriter(str(tmp_path))
    os.unlink(part)
    with pytest.raises(OutputError, match=r"part-000002\.parquet: committed part is missing"):
        PartWriter(str(tmp_path))
    assert (tmp_path / "manifest.jsonl").read_bytes() == good  # a refusal changes nothing


def test_commit_never_overwrites_an_existing_part(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=10)
    foreign = tmp_path / "data" / "part-000001.parquet"
    foreign.write_bytes(b"someone else's bytes")  # appeared after open
    w.add([cand(1)])
    w.flush()
    assert foreign.read_bytes() == b"someone else's bytes"
    assert manifest(tmp_path)[0]["file"] == "data/part-000002.parquet"
    store = LocalStore(str(tmp_path), str(tmp_path))
    (tmp_path / "data" / "x").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        store.rename_noreplace("data/x", "data/part-000002.parquet")


def test_committed_vectors_rebuild_the_novelty_index(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=2)
    rows = [cand(i) for i in range(5)]
    no_vector = cand(99)
    no_vector.embedding = None
    w.add([*rows, no_vector])
    w.close()
    ids, vectors = PartWriter(str(tmp_path)).committed_vectors()
    assert ids == [c.id for c in rows] and vectors.dtype == np.float32 and vectors.shape == (5, 8)
    np.testing.assert_allclose(vectors, np.stack([c.embedding for c in rows]))
    empty_ids, empty = PartWriter(str(tmp_path / "fresh")).committed_vectors()
    assert empty_ids == [] and empty.shape == (0, 0)


def test_flush_interval_triggers_a_flush_on_the_next_add(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("instructflow.actors.core.writer.time.monotonic", lambda: now[0])
    w = PartWriter(str(tmp_path), rows_per_part=100, flush_interval_s=5)
    w.add([cand(1)])
    assert not w.flush_due() and w.maybe_flush() == 0
    now[0] += 5
    assert w.flush_due() and w.add([cand(2)])["accepted"] == 1
    assert w.stats()["pending_rows"] == 0 and w.counts() == {"general": 2}


def test_rejects_and_dead_letters_are_logged_and_counted(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path))
    w.reject(cand(1), "near_duplicate", "cosine 0.95")
    w.dead_letter({"category": "general", "reason": "http_500", "detail": "server error"})
    w.flush()
    reject = json.loads((tmp_path / "rejects.jsonl").read_text())
    assert reject["reason"] == "near_duplicate" and reject["id"] == cand(1).id and "meta" not in reject
    assert json.loads((tmp_path / "dead_letters.jsonl").read_text())["reason"] == "http_500"
    quiet = PartWriter(str(tmp_path / "quiet"), keep_rejects=False)
    quiet.reject(cand(1), "too_short")
    quiet.close()
    assert not (tmp_path / "quiet" / "rejects.jsonl").exists()
    assert quiet.stats()["rejects"] == {"too_short": 1}


def test_add_refuses_unanswered_rows_and_close_is_final(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path))
    with pytest.raises(ValueError, match="without a response"):
        w.add([Candidate(category="general", instruction="no answer yet")])
    w.close()
    assert w.close() == []
    with pytest.raises(RuntimeError, match="closed"):
        w.add([cand(1)])


def test_output_error_survives_pickling() -> None:
    err = OutputError("/data/out", OSError(28, "No space left on device"))
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) == "cannot write output at /data/out: ENOSPC: No space left on device"
    assert copy.path == "/data/out"


def test_manifest_entry_round_trips() -> None:
    entry = PartEntry("data/part-000001.parquet", 2, 10, "a", "b", "0" * 64, {"g": 2}, "t", "r", 5)
    assert PartEntry.from_line(entry.to_line()) == entry
