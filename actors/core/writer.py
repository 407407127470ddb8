"""`PartWriter`: accepted rows -> immutable Parquet parts, committed by a manifest line.

The writer admits rows (skipping committed or pending ids and rows past their category's target),
buffers them, and hands full parts to `PartCommitter` (the commit protocol, in `commit`). Opening a
writer runs `recovery.recover` first: the manifest is the only truth about what exists. A committed
file is never rewritten. One writer per output root at a time. Layout and rules: docs/output.md.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from instructflow.actors.core import exports as _exports
from instructflow.actors.core.commit import PartCommitter
from instructflow.actors.core.manifest import PartEntry
from instructflow.actors.core.recovery import Recovered, iter_vectors, recover
from instructflow.actors.core.rejects import DEAD_LETTERS, REJECTS, RecordLog, reject_record
from instructflow.actors.core.schema import rows_to_table
from instructflow.actors.core.storage import OutputError, Store, open_store
from instructflow.instructors.record import Candidate

log = logging.getLogger(__name__)


class PartWriter:
    """Commits accepted rows as Parquet parts under a manifest; the Ray-free core of the writer actor.

    Args:
        root: output root, a local path or a filesystem URI (``file://``, ``s3://``, ``gs://``).
        targets: rows wanted per category; rows past a category's target are skipped. None: no limit.
        rows_per_part: most rows in one part; reaching it triggers a flush.
        flush_interval_s: pending rows older than this are flushed by the next `add` or `maybe_flush`.
        run_id: recorded in every manifest entry.
        exports: formats to keep/write (``jsonl``, ``sharegpt``, ``alpaca``); see `exports`.
        keep_rejects: write rejected candidates to the rejects log (they are counted either way).
        filesystem: a pyarrow filesystem to use with `root` as a path in it (tests, custom stores).
        on_commit: called with each committed part's entry, its commit seconds and the teacher
            tokens its rows cost, per category (for metrics).

    Raises:
        OutputError: the root cannot be created or written, or its manifest is corrupt.
    """

    def __init__(
        self,
        root: str,
        *,
        targets: dict[str, int] | None = None,
        rows_per_part: int = 1000,
        flush_interval_s: float = 5.0,
        run_id: str = "",
        exports: Sequence[str] = ("jsonl",),
        keep_rejects: bool = True,
        filesystem: pafs.FileSystem | None = None,
        on_commit: Callable[[PartEntry, float, dict[str, int]], None] | None = None,
    ) -> None:
        if rows_per_part < 1 or flush_interval_s <= 0:
            raise ValueError("rows_per_part must be >= 1 and flush_interval_s > 0")
        unknown = set(exports) - set(_exports.EXPORT_FILES)
        if unknown:
            raise ValueError(f"unknown export format(s) {sorted(unknown)}")
        self.store: Store = open_store(root, filesystem)
        self.targets = dict(targets) if targets is not None else None
        self.rows_per_part, self.flush_interval_s, self.run_id = rows_per_part, flush_interval_s, run_id
        self.formats = tuple(exports)
        self._pending: list[Candidate] = []
        self._pending_ids: set[str] = set()
        self._pending_sources: set[tuple[str, str]] = set()  # (category, source_id) of pending rows
        self._pending_counts: Counter[str] = Counter()
        self._oldest_pending: float | None = None
        self._on_commit = on_commit
        self._kept_tokens: Counter[str] = Counter()  # tokens of the rows committed this session
        self._skipped: Counter[str] = Counter()
        self._skipped_by_category: Counter[str] = Counter()
        self._closed = False
        self._commits, self._commit_seconds_total = 0, 0.0
        self._commit_seconds_last: float | None = None
        self._bytes_written = 0
        found: Recovered = self._guard("", lambda: recover(self.store, self.formats))
        self._committed_ids, self._committed_counts = found.ids, found.counts
        self._committed_sources = found.sources
        self.committer = PartCommitter(self.store, found, run_id=run_id, jsonl="jsonl" in self.formats)
        self.rejects = RecordLog(self.store, REJECTS, enabled=keep_rejects)
        self.dead_letters = RecordLog(self.store, DEAD_LETTERS)

    # ---------------------------------------------------------------- recovery on open

    def _guard(self, rel: str, action: Callable[[], Any]) -> Any:
        """Runs `action`, turning any OSError into one OutputError that names the path."""
        try:
            return action()
        except OSError as exc:
            raise OutputError(exc.filename or self.store.display(rel), exc) from exc

    # ---------------------------------------------------------------- accepting rows

    def add(self, candidates: Iterable[Candidate]) -> dict[str, int]:
        """Buffers rows for the next part, skipping ids already committed or pending and rows of a
        category whose target is already reached; flushes when a part is full or the interval passed.

        Returns:
            ``{"accepted": n, "duplicate_id": n, "over_target": n, "unknown_category": n}``.

        Raises:
            OutputError: a flush triggered here failed (the rows stay pending).
        """
        if self._closed:
            raise RuntimeError("the writer is closed")
        result = Counter({"accepted": 0, "duplicate_id": 0, "over_target": 0, "unknown_category": 0})
        for candidate in candidates:
            reason = self.skip_reason(candidate)
            result[reason or "accepted"] += 1
            if reason:
                self._skipped[reason] += 1
                self._skipped_by_category[candidate.category] += 1
                continue
            self._pending.append(candidate)
            self._pending_ids.add(candidate.id)
            if candidate.source_id:
                self._pending_sources.add((candidate.category, candidate.source_id))
            self._pending_counts[candidate.category] += 1
            if self._oldest_pending is None:
                self._oldest_pending = time.monotonic()
        self.maybe_flush()
        return dict(result)

    def skip_reason(
        self, candidate: Candidate, ahead_ids: set[str] | None = None, ahead: Counter[str] | None = None,
        ahead_sources: set[tuple[str, str]] | None = None,
    ) -> str | None:
        """Why `add` would skip this row (None: it would be taken). `ahead_ids`, `ahead` and
        `ahead_sources` are rows about to be added before it (their ids, counts per category and
        (category, source_id) pairs). A row made from another row is skipped as `duplicate_source`
        when its category already has a row made from that one: a source is used once, whatever
        restarts handed it out twice."""
        if candidate.response is None:
            raise ValueError(f"candidate {candidate.id} reached the writer without a response")
        row_id = candidate.id
        if row_id in self._committed_ids or row_id in self._pending_ids or row_id in (ahead_ids or ()):
            return "duplicate_id"
        if candidate.source_id:
            key = (candidate.category, candidate.source_id)
            if key in self._committed_sources or key in self._pending_sources or key in (ahead_sources or ()):
                return "duplicate_source"
        if self.targets is None:
            return None
        if candidate.category not in self.targets:
            return "unknown_category"
        cat = candidate.category
        have = self._committed_counts[cat] + self._pending_counts[cat] + (ahead or Counter())[cat]
        return "over_target" if have >= self.targets[cat] else None

    def _interval_passed(self) -> bool:
        return self._oldest_pending is not None and time.monotonic() - self._oldest_pending >= self.flush_interval_s

    def flush_due(self) -> bool:
        """True when a part is full or the oldest pending row waited `flush_interval_s`."""
        return len(self._pending) >= self.rows_per_part or self._interval_passed()

    def maybe_flush(self) -> int:
        """Commits the full parts, or everything once the interval passed; returns rows committed."""
        if self._interval_passed():
            return self.flush()
        return self.flush(full_parts_only=True) if self.flush_due() else 0

    def flush(self, full_parts_only: bool = False) -> int:
        """Commits pending rows in parts of at most `rows_per_part` and writes buffered side logs.

        Args:
            full_parts_only: leave a last, partly filled part pending.

        Returns:
            Rows committed.

        Raises:
            OutputError: a part could not be committed; its rows stay pending for a retry and every
                committed part and the manifest are unchanged.
        """
        committed = 0
        while len(self._pending) >= (self.rows_per_part if full_parts_only else 1):
            batch = self._pending[: self.rows_per_part]
            self._commit(batch)
            del self._pending[: len(batch)]
            for candidate in batch:
                self._pending_ids.discard(candidate.id)
                if candidate.source_id:
                    self._pending_sources.discard((candidate.category, candidate.source_id))
                self._pending_counts[candidate.category] -= 1
            committed += len(batch)
        if not self._pending:
            self._oldest_pending = None
        self.rejects.flush()
        self.dead_letters.flush()
        return committed

    def _commit(self, batch: list[Candidate]) -> None:
        started = time.perf_counter()
        entry = self.committer.commit(rows_to_table(batch))
        self._committed_ids.update(c.id for c in batch)
        self._committed_sources.update((c.category, c.source_id) for c in batch if c.source_id)
        self._committed_counts.update(entry.categories)
        self._bytes_written += entry.bytes
        seconds = time.perf_counter() - started
        self._commits += 1
        self._commit_seconds_total += seconds
        self._commit_seconds_last = seconds
        tokens: Counter[str] = Counter()
        for candidate in batch:
            tokens[candidate.category] += candidate.prompt_tokens + candidate.completion_tokens
        self._kept_tokens.update(tokens)
        if self._on_commit is not None:
            self._on_commit(entry, seconds, dict(tokens))

    # ---------------------------------------------------------------- reading state

    def counts(self) -> dict[str, int]:
        """Committed rows per category (every target category listed, zero included)."""
        counts = dict.fromkeys(self.targets or {}, 0)
        counts.update(self._committed_counts)
        return counts

    def done(self) -> bool:
        """True when every category's committed rows reached its target (False without targets)."""
        if self.targets is None:
            return False
        return all(self._committed_counts[c] >= n for c, n in self.targets.items())

    @property
    def committed_ids(self) -> frozenset[str]:
        """Ids of every committed row."""
        return frozenset(self._committed_ids)

    @property
    def entries(self) -> list[PartEntry]:
        """The manifest's entries, in commit order."""
        return list(self.committer.entries)

    def accepted(self) -> dict[str, int]:
        """Committed plus pending rows per category (what will exist after the next flush)."""
        counts = self.counts()
        for category, n in self._pending_counts.items():
            counts[category] = counts.get(category, 0) + n
        return counts

    def stats(self) -> dict[str, Any]:
        """Counters for the display and metrics (no ids or text).

        Keys: ``committed`` and ``accepted`` (per category), ``committed_rows``, ``pending_rows``,
        ``parts``, ``bytes_written`` and ``kept_tokens`` (teacher tokens of the rows committed, per
        category; both this session), ``skipped`` (per reason),
        ``skipped_by_category``, ``rejects`` and ``dead_letters`` (per reason), ``commits``,
        ``commit_seconds_total``, ``commit_seconds_last``, ``jsonl_stale``.
        """
        return {
            "committed": self.counts(),
            "accepted": self.accepted(),
            "committed_rows": len(self._committed_ids),
            "kept_tokens": dict(self._kept_tokens),
            "pending_rows": len(self._pending),
            "parts": len(self.committer.entries),
            "bytes_written": self._bytes_written,
            "skipped": dict(self._skipped),
            "skipped_by_category": dict(self._skipped_by_category),
            "rejects": self.rejects.counts(),
            "dead_letters": self.dead_letters.counts(),
            "commits": self._commits,
            "commit_seconds_total": self._commit_seconds_total,
            "commit_seconds_last": self._commit_seconds_last,
            "jsonl_stale": self.committer.jsonl_stale,
        }

    def iter_vectors(self) -> Iterator[tuple[list[str], np.ndarray]]:
        """Yields ``(ids, vectors)`` per committed part, for rows that have an embedding."""
        return iter_vectors(self.store, list(self.committer.entries))

    def committed_vectors(self) -> tuple[list[str], np.ndarray]:
        """All committed ids with embeddings and their vectors (n x d float32; 0 x 0 when none),
        so a resumed run rebuilds its novelty index without re-encoding."""
        ids: list[str] = []
        blocks: list[np.ndarray] = []
        for part_ids, vectors in self.iter_vectors():
            ids.extend(part_ids)
            blocks.append(vectors)
        return ids, (np.concatenate(blocks) if blocks else np.zeros((0, 0), dtype=np.float32))

    # ---------------------------------------------------------------- rejects and closing

    def reject(self, candidate: Candidate, reason: str, detail: str | None = None) -> None:
        """Counts a rejected candidate and, when enabled, logs it to the rejects file on next flush."""
        self.rejects.add(reject_record(candidate, reason, detail))

    def dead_letter(self, record: dict[str, Any]) -> None:
        """Logs a request that failed for good (a dict with at least ``reason``) on next flush."""
        self.dead_letters.add(record)

    def close(self) -> list[str]:
        """Flushes, then writes the exports that are written whole; returns their locations.
        Idempotent."""
        if self._closed:
            return []
        self.flush()
        written = []
        skipped: Counter[str] = Counter()
        for fmt in self.formats:
            if fmt == "jsonl" and not self.committer.jsonl_stale:
                continue  # kept current by the appends
            rel = _exports.EXPORT_FILES[fmt]
            write = functools.partial(_exports.write_export, self.store, self.committer.entries, fmt, skipped=skipped)
            written.append(self._guard(rel, write))
        for fmt, n in skipped.items():
            log.warning("%s export: skipped %d multi-turn row(s); the format has no turns", fmt, n)
        self.committer.jsonl_stale = False
        self._closed = True
        return written
