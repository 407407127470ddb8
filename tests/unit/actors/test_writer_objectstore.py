"""Object-store roots: the same commit protocol through URIs and non-local pyarrow filesystems.

``file://`` resolves through `FileSystem.from_uri` to the local disk; ``mock://`` and an fsspec
memory filesystem are non-local pyarrow filesystems that take the object-store path (no append:
the manifest is replaced whole by an atomic write-then-rename, side logs become one object per flush).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from instructflow.actors.core.storage import ArrowStore, LocalStore
from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate


def cand(i: int) -> Candidate:
    return Candidate(category="general", instruction=f"Object store row {i}", response=f"answer {i}",
                     embedding=np.full(3, i, dtype=np.float32))


@pytest.fixture
def memory() -> tuple[pafs.FileSystem, str]:
    """A fresh root in an fsspec memory filesystem seen through pyarrow (like S3: no local disk)."""
    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory"))), f"/bucket/{uuid.uuid4().hex}"


def names(fs: pafs.FileSystem, path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos)


def test_file_uri_uses_the_local_disk_with_fsync(tmp_path: Path) -> None:
    w = PartWriter(f"file://{tmp_path}", rows_per_part=2)
    assert isinstance(w.store, LocalStore)
    w.add([cand(1), cand(2)])
    assert w.close() == []
    assert pq.read_table(tmp_path / "data").num_rows == 2
    assert PartWriter(str(tmp_path)).counts() == {"general": 2}  # path and URI name the same output


def test_mock_uri_takes_the_object_store_path() -> None:
    w = PartWriter("mock:///bucket/run", rows_per_part=2)
    assert isinstance(w.store, ArrowStore) and not w.store.supports_append
    w.add([cand(i) for i in range(5)])
    w.close()
    fs, root = w.store.filesystem, w.store.root
    assert names(fs, f"{root}/data") == ["part-000001.parquet", "part-000002.parquet", "part-000003.parquet"]
    assert pq.read_table(f"{root}/data", filesystem=fs).num_rows == 5
    with fs.open_input_stream(f"{root}/instructions.jsonl") as f:
        assert len(f.read().splitlines()) == 5


def test_object_store_commit_reopen_and_recovery(memory: tuple[pafs.FileSystem, str]) -> None:
    fs, root = memory
    w = PartWriter(root, filesystem=fs, rows_per_part=2, exports=["jsonl", "sharegpt"])
    w.add([cand(i) for i in range(4)])
    w.reject(cand(9), "too_short")
    w.flush()
    assert w.stats()["jsonl_stale"]  # no append on object stores: rebuilt whole on close
    with fs.open_input_stream(f"{root}/manifest.jsonl") as f:
        good = f.read()
    assert len(good.splitlines()) == 2
    with fs.open_output_stream(f"{root}/manifest.jsonl") as f:  # a torn line and crash leftovers
        f.write(good + b'{"file": "data/part-0000')
    with fs.open_output_stream(f"{root}/data/part-000003.parquet") as f:
        f.write(b"uncommitted")
    with fs.open_output_stream(f"{root}/data/.part-000004.parquet.tmp-0badf00d") as f:
        f.write(b"temp")
    again = PartWriter(root, filesystem=fs, rows_per_part=2, exports=["jsonl", "sharegpt"])
    assert again.counts() == {"general": 4}
    with fs.open_input_stream(f"{root}/manifest.jsonl") as f:
        assert f.read() == good
    assert names(fs, f"{root}/data") == ["part-000001.parquet", "part-000002.parquet"]
    assert again.add([cand(1), cand(5)])["duplicate_id"] == 1
    written = again.close()
    assert [w.rpartition("/")[2] for w in written] == ["instructions.jsonl", "sharegpt.jsonl"]
    with fs.open_input_stream(f"{root}/instructions.jsonl") as f:
        assert len(f.read().splitlines()) == 5
    rejects = names(fs, f"{root}/rejects")
    assert len(rejects) == 1
    with fs.open_input_stream(f"{root}/rejects/{rejects[0]}") as f:
        assert json.loads(f.read())["reason"] == "too_short"
    ids, vectors = PartWriter(root, filesystem=fs).committed_vectors()
    assert len(ids) == 5 and vectors.shape == (5, 3)
