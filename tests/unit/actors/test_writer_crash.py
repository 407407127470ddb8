"""Property: whatever point of the commit protocol a crash hits, reopening loses no committed row
and duplicates none.

A crash is simulated by raising a BaseException from the committer's hook right after one protocol
step (write, fsync, rename, directory fsync, manifest append, export append) and abandoning the
writer object without any cleanup; optionally a torn half-line is then left at the end of the
manifest and of instructions.jsonl, as an interrupted append would leave it. The next writer opens
the same root, and rows lost with the crash are added again, as the pipeline would regenerate them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec
import pyarrow.fs as pafs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructflow.actors.core.commit import STAGES
from instructflow.actors.core.exports import INSTRUCTIONS, read_part
from instructflow.actors.core.manifest import MANIFEST, read_manifest
from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate


class Crash(BaseException):
    """Not an Exception: nothing in the writer may catch it, just as nothing survives a SIGKILL."""


def cand(i: int) -> Candidate:
    return Candidate(category=("general", "trivia")[i % 2], instruction=f"Crash-test instruction {i}", response=f"r{i}")


steps = st.lists(
    st.tuples(
        st.lists(st.integers(0, 15), min_size=1, max_size=6),  # ids added in this step
        st.none() | st.sampled_from(STAGES),  # where this step crashes, if at all
        st.booleans(),  # leave a torn manifest line behind
        st.booleans(),  # leave a torn instructions.jsonl line behind
    ),
    min_size=1,
    max_size=6,
)


@contextmanager
def output_root(kind: str) -> Iterator[tuple[str, pafs.FileSystem | None]]:
    if kind == "local":
        with tempfile.TemporaryDirectory() as root:
            yield root, None
    else:
        yield f"/crash/{uuid.uuid4().hex}", pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))


def on_disk_ids(w: PartWriter) -> list[str]:
    """Ids in the parts the manifest lists, checked against the manifest's own record of them."""
    store, ids = w.store, []
    state = read_manifest(store)
    assert not state.torn and read(w, MANIFEST) == state.valid
    listed = sorted(e.file.rpartition("/")[2] for e in state.entries)
    assert store.listdir("data") == listed, "orphan or temp files survived recovery"
    for entry in state.entries:
        assert hashlib.sha256(store.read(entry.file)).hexdigest() == entry.sha256
        ids += read_part(store, entry, ["id"]).column("id").to_pylist()
    if store.supports_append:  # object stores rebuild the export on close instead
        lines = read(w, INSTRUCTIONS).decode().splitlines()
        assert [cand_id(json.loads(x)) for x in lines] == ids, "instructions.jsonl disagrees with the parts"
    return ids


def cand_id(record: dict) -> str:
    return Candidate(category=record["category"], instruction=record["instruction"], system=record.get("system")).id


def read(w: PartWriter, rel: str) -> bytes:
    return w.store.read(rel) if w.store.size(rel) is not None else b""


def tear(w: PartWriter, rel: str, tail: bytes) -> None:
    w.store.write(rel, read(w, rel) + tail)


def crash_at(stage: str | None):
    def hook(now: str) -> None:
        if now == stage:
            raise Crash(stage)

    return hook


@pytest.mark.parametrize("kind", ["local", "object-store"])
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps, rows_per_part=st.integers(1, 4))
def test_recovery_never_loses_or_duplicates_committed_rows(kind: str, plan: list, rows_per_part: int) -> None:
    with output_root(kind) as (root, fs):
        w = PartWriter(root, filesystem=fs, rows_per_part=rows_per_part)
        wanted: set[str] = set()  # every id ever offered
        acked: set[str] = set()  # ids a completed flush reported as committed
        for numbers, stage, torn_manifest, torn_jsonl in plan:
            batch = [cand(n) for n in numbers]
            wanted.update(c.id for c in batch)
            w.committer.hook = crash_at(stage)
            try:
                w.add(batch)
                w.flush()
                acked = set(w.committed_ids)
                continue
            except Crash:
                pass
            if torn_manifest:
                tear(w, MANIFEST, b'{"file": "data/part-0000')
            if torn_jsonl and w.store.supports_append:
                tear(w, INSTRUCTIONS, b'{"instruction": "half a li')
            w = PartWriter(root, filesystem=fs, rows_per_part=rows_per_part)  # the restart
            ids = on_disk_ids(w)
            assert len(ids) == len(set(ids)), "a row was committed twice"
            assert acked <= set(ids), "a committed row was lost"
            assert set(ids) <= wanted and w.committed_ids == set(ids)
            assert sum(w.counts().values()) == len(ids)
            w.add([cand(n) for n in range(16) if cand(n).id in wanted - set(ids)])  # regenerate
        w.committer.hook = crash_at(None)
        w.close()
        final = on_disk_ids(PartWriter(root, filesystem=fs))
        assert sorted(final) == sorted(wanted)
