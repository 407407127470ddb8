"""PartWriter under a full disk and an unwritable output: one clear OutputError, nothing committed lost.

A full disk is injected at the lowest write primitive (bytes go out until the budget is spent, then
ENOSPC, as a real disk does mid-write) and, where this process may mount, with a real small tmpfs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from instructflow.actors.core import storage
from instructflow.actors.core.storage import OutputError
from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate
from tests.prerequisites import unavailable


def cand(i: int, text_bytes: int = 40) -> Candidate:
    rng = np.random.default_rng(i)
    noise = rng.bytes(text_bytes).hex()  # incompressible, so parts have a predictable size
    return Candidate(category="general", instruction=f"Question {i}?", response=f"Answer {i}: {noise}",
                     embedding=rng.normal(size=8).astype(np.float32))


class DiskBudget:
    """Replaces the store's write primitive: writes until `left` bytes are spent, then ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.left: int | None = None
        real = storage._write_all

        def limited(fd: int, data: object) -> None:
            view = memoryview(data)  # type: ignore[arg-type]
            if self.left is not None and len(view) > self.left:
                real(fd, view[: self.left])
                self.left = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if self.left is not None:
                self.left -= len(view)
            real(fd, view)

        monkeypatch.setattr(storage, "_write_all", limited)


def snapshot(root: Path) -> dict[str, bytes]:
    files = [root / "manifest.jsonl", root / "instructions.jsonl", *sorted((root / "data").glob("part-*"))]
    return {p.name: p.read_bytes() for p in files if p.exists()}


def second_commit_sizes(scratch: Path) -> tuple[int, int]:
    """Sizes of the part file and manifest line that committing cand(3), cand(4) second produces."""
    w = PartWriter(str(scratch), rows_per_part=2)
    w.add([cand(1), cand(2)])
    line = (scratch / "manifest.jsonl").stat().st_size
    w.add([cand(3), cand(4)])
    return (scratch / "data" / "part-000002.parquet").stat().st_size, (scratch / "manifest.jsonl").stat().st_size - line


def test_enospc_at_every_point_of_a_commit_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    part_size, line_size = second_commit_sizes(tmp_path / "scratch")
    disk = DiskBudget(monkeypatch)
    root = tmp_path / "out"
    w = PartWriter(str(root), rows_per_part=2)
    w.add([cand(1), cand(2)])
    before = snapshot(root)
    # fail inside the part, just after it, inside the manifest line, and in the JSONL export
    for budget in (0, 100, part_size - 1, part_size, part_size + line_size // 2, part_size + line_size - 1):
        disk.left = budget
        with pytest.raises(OutputError, match="ENOSPC: No space left on device") as caught:
            w.add([cand(3), cand(4)])
        assert str(root) in str(caught.value)
        assert snapshot(root) == before, f"budget {budget} changed committed files"
        assert w.stats()["pending_rows"] == 2 and w.counts() == {"general": 2}
    disk.left = None
    assert w.flush() == 2
    assert sorted(os.listdir(root / "data")) == ["part-000001.parquet", "part-000002.parquet"]
    reopened = PartWriter(str(root))
    assert reopened.counts() == {"general": 4}
    assert len((root / "instructions.jsonl").read_text().splitlines()) == 4


def test_enospc_in_the_jsonl_export_keeps_the_commit_and_repairs_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = DiskBudget(monkeypatch)
    w = PartWriter(str(tmp_path), rows_per_part=2)
    w.add([cand(1), cand(2)])
    part = (tmp_path / "data" / "part-000001.parquet").stat().st_size
    line = (tmp_path / "manifest.jsonl").stat().st_size
    disk.left = part + line + 10  # the part and its manifest line fit; the export does not
    w.add([cand(3), cand(4)])  # committed: no error
    assert w.counts() == {"general": 4} and w.stats()["jsonl_stale"]
    disk.left = None
    w.close()
    assert len((tmp_path / "instructions.jsonl").read_text().splitlines()) == 4


def test_unwritable_root_under_a_regular_file_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputError, match=r"a-file.*ENOTDIR: Not a directory"):
        PartWriter(str(blocker / "out"))


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)):
        unavailable("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_real_full_tmpfs_fails_cleanly_and_resumes_when_space_returns(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "256k") as root:
        filler = root / "filler"
        filler.write_bytes(b"\0" * 150_000)
        w = PartWriter(str(root), rows_per_part=20)
        committed_before = None
        with pytest.raises(OutputError, match="ENOSPC") as caught:
            for i in range(0, 4000, 20):
                w.add([cand(n, text_bytes=400) for n in range(i, i + 20)])
                committed_before = snapshot(root)
        assert str(root) in caught.value.path and committed_before is not None
        assert snapshot(root) == committed_before
        for part in (root / "data").glob("part-*"):
            pq.read_table(part)  # every committed part still reads
        filler.unlink()
        assert w.flush() == 20  # the failed part commits once space is back
        assert PartWriter(str(root)).counts() == {"general": len(pq.read_table(root / "data"))}


def test_output_turned_read_only_fails_cleanly_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m") as root:
        w = PartWriter(str(root), rows_per_part=2)
        w.add([cand(1), cand(2)])
        before = snapshot(root)
        assert _mount("-o", "remount,ro", str(root))
        try:
            with pytest.raises(OutputError, match="EROFS"):
                w.add([cand(3), cand(4)])
            with pytest.raises(OutputError, match="EROFS"):
                PartWriter(str(root))  # the probe refuses before anything is paid for
        finally:
            _mount("-o", "remount,rw", str(root))
        assert snapshot(root) == before
        assert w.flush() == 2 and PartWriter(str(root)).counts() == {"general": 4}
