"""The commit protocol for one Parquet part (steps 1-6 of docs/output.md).

1. write the Parquet bytes to ``data/.part-NNNNNN.parquet.tmp-<random>``;
2. fsync it (local disk; an object-store put is already atomic and durable);
3. rename it to ``data/part-NNNNNN.parquet``, never replacing an existing file;
4. fsync ``data/`` so the new name survives a power cut;
5. append one line to ``manifest.jsonl`` and fsync it -- the commit point (object stores: the
   manifest is replaced whole by an atomic put of the old lines plus the new one);
6. append the rows to ``instructions.jsonl`` (an export, repaired on reopen when behind).

A failure before step 5 deletes what was written and raises `OutputError`; the manifest and every
committed part are left exactly as they were.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from instructflow.actors.core import exports
from instructflow.actors.core.manifest import DATA_DIR, MANIFEST, PartEntry, part_file
from instructflow.actors.core.recovery import Recovered
from instructflow.actors.core.storage import OutputError, Store, temp_name

log = logging.getLogger(__name__)

STAGES = ("written", "synced", "renamed", "dir_synced", "committed", "exported")
# Low-cardinality columns worth dictionary encoding; text and vectors are not.
_DICTIONARY = ["category", "model", "template_digest", "topic", "verdict", "system"]


def parquet_bytes(table: pa.Table) -> pa.Buffer:
    """The Parquet file of `table` (zstd), in memory."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", use_dictionary=_DICTIONARY)
    return sink.getvalue()


class PartCommitter:
    """Commits tables as parts of one output root, starting from its recovered state.

    Attributes:
        entries: the manifest's entries, in commit order.
        jsonl_stale: ``instructions.jsonl`` is behind the manifest (rebuild it on close).
        hook: called with each name in `STAGES` right after that step; tests raise from it to
            simulate a crash at that point.
    """

    def __init__(self, store: Store, found: Recovered, *, run_id: str, jsonl: bool) -> None:
        self.store, self.run_id, self.jsonl = store, run_id, jsonl
        self.entries = found.entries
        self.jsonl_stale = found.jsonl_stale
        self.hook: Callable[[str], None] = lambda stage: None
        self._manifest = found.manifest
        self._next = found.next_part
        self._jsonl_size = sum(e.jsonl_bytes for e in found.entries)

    def commit(self, table: pa.Table) -> PartEntry:
        """Writes `table` as the next part and commits it; returns its manifest entry.

        Raises:
            OutputError: nothing was committed (the manifest and committed parts are unchanged).
        """
        data = parquet_bytes(table)
        lines = exports.encode_rows(table, "jsonl")
        try:
            number = self._free_number()
        except OSError as exc:
            raise OutputError(exc.filename or self.store.display(DATA_DIR), exc) from exc
        ids = table.column("id")
        entry = PartEntry(
            file=part_file(number),
            rows=table.num_rows,
            bytes=data.size,
            min_id=pc.min(ids).as_py(),
            max_id=pc.max(ids).as_py(),
            sha256=hashlib.sha256(data).hexdigest(),
            categories=dict(Counter(table.column("category").to_pylist())),
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            run_id=self.run_id,
            jsonl_bytes=len(lines),
        )
        self._place(entry.file, data)
        self._append_manifest(entry)
        self.entries.append(entry)
        self._next = number + 1
        self.hook("committed")
        self._append_jsonl(lines)
        self.hook("exported")
        return entry

    def _free_number(self) -> int:
        number = self._next
        while self.store.size(part_file(number)) is not None:  # never reuse a taken name
            number += 1
        return number

    def _place(self, rel: str, data: pa.Buffer) -> None:
        """Steps 1-4; on failure the temp file (or the renamed part) is deleted again."""
        store, tmp, placed = self.store, temp_name(rel), False
        try:
            store.write(tmp, data)
            self.hook("written")
            store.sync(tmp)
            self.hook("synced")
            store.rename_noreplace(tmp, rel)
            placed = True
            self.hook("renamed")
            store.sync_dir(DATA_DIR)
            self.hook("dir_synced")
        except OSError as exc:
            self._best_effort(lambda: store.delete(rel if placed else tmp))
            raise OutputError(exc.filename or store.display(rel), exc) from exc

    def _append_manifest(self, entry: PartEntry) -> None:
        """Step 5; on failure the manifest is cut back and the uncommitted part deleted."""
        line, store = entry.to_line(), self.store
        try:
            if store.supports_append:
                store.append(MANIFEST, line, len(self._manifest))
                if not self._manifest:
                    store.sync_dir("")  # the manifest's own name must survive too
            else:
                store.write_atomic(MANIFEST, [self._manifest, line])
        except OSError as exc:
            if store.supports_append:  # a later append also cuts any torn tail, see Store.append
                self._best_effort(lambda: store.truncate(MANIFEST, len(self._manifest)))
            self._best_effort(lambda: store.delete(entry.file))
            raise OutputError(exc.filename or store.display(MANIFEST), exc) from exc
        self._manifest += line

    def _append_jsonl(self, lines: bytes) -> None:
        """Step 6. The rows are committed whatever happens here; a failure only marks the export stale."""
        if not self.jsonl:
            return
        if not self.store.supports_append or self.jsonl_stale:
            self.jsonl_stale = True  # rebuilt whole on close
            return
        try:
            self.store.append(exports.INSTRUCTIONS, lines, self._jsonl_size)
            self._jsonl_size += len(lines)
        except OSError as exc:
            log.warning("could not append to %s (%s); it will be rebuilt", exports.INSTRUCTIONS, exc)
            self.jsonl_stale = True

    @staticmethod
    def _best_effort(action: Callable[[], Any]) -> None:
        try:
            action()
        except OSError as exc:  # a reopen cleans up whatever is left
            log.warning("cleanup after a failed commit also failed: %s", exc)
