"""The writer as a pipeline stage: accepted rows into `PartWriter`, surplus rows dropped by reason."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instructflow.actors.core.stage import Outcome, Stage
from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate

log = logging.getLogger(__name__)


@dataclass
class WriterStats:
    committed: dict[str, int]  # rows per category in committed parts (earlier runs included)
    accepted: dict[str, int]  # committed plus pending
    pending_rows: int
    parts: int
    commits: int
    bytes_written: int
    kept_tokens: dict[str, int] = field(default_factory=dict)  # teacher tokens of the rows committed
    rejects_logged: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # the last failure of a timed flush


class WriterStage(Stage):
    """Takes rows for the writer: a row is accepted, or dropped as `over_target` (its category
    already has its rows), `duplicate_id` (the same instruction is committed or pending),
    `duplicate_source` (its category already has a row made from the same source row) or
    `unknown_category`. Accepted rows are not recorded in the books here: a writer that dies loses its
    pending rows, so the driver counts as accepted what the writer reports as committed (durable, in
    the manifest) plus pending (while it lives)."""

    name = "writer"
    batch_size = 256
    records_accepted = False  # the driver reads acceptance from the writer: committed + pending
    endpoints = frozenset({"log_rejects", "log_dead_letters", "committed_vectors", "counts", "close"})

    def __init__(self, writer: PartWriter) -> None:
        self.writer = writer
        self.error: str | None = None

    async def process(self, batch: list[Candidate]) -> Outcome:
        out = Outcome()
        ids: set[str] = set()
        counts: Counter[str] = Counter()
        sources: set[tuple[str, str]] = set()
        for cand in batch:
            reason = self.writer.skip_reason(cand, ids, counts, sources)
            if reason:
                out.dropped.append((cand, reason))
            else:
                out.accepted.append(cand)
                ids.add(cand.id)
                counts[cand.category] += 1
                if cand.source_id:
                    sources.add((cand.category, cand.source_id))
        return out

    async def act(self, outcome: Outcome) -> None:
        if outcome.accepted:
            self.writer.add(outcome.accepted)  # a failed flush raises: the run stops, rows stay pending

    async def tick(self) -> None:
        try:
            self.writer.maybe_flush()
            self.error = None
        except Exception as exc:  # kept for stats; the next add or the final flush raises it
            if str(exc) != self.error:  # once per distinct failure, not every tick of a full disk
                log.error("timed flush failed: %s", exc)
            self.error = str(exc)

    async def finish(self) -> None:
        self.writer.flush()

    def log_rejects(self, rejects: list[tuple[Candidate, str]]) -> None:
        """Logs rejected candidates (when `keep_rejects`); the books count them elsewhere."""
        for cand, reason in rejects:
            self.writer.reject(cand, reason, cand.meta.get("reject_detail"))

    def log_dead_letters(self, letters: list[dict[str, Any]]) -> None:
        """Logs requests that failed for good (dicts with at least ``reason``)."""
        for letter in letters:
            self.writer.dead_letter(letter)

    def committed_vectors(self) -> tuple[list[str], np.ndarray]:
        return self.writer.committed_vectors()

    def counts(self) -> dict[str, int]:
        return self.writer.counts()

    def close(self) -> list[str]:
        """Flushes and writes the whole-file exports; returns their locations."""
        return self.writer.close()

    def detail(self) -> WriterStats:
        s = self.writer.stats()
        return WriterStats(
            committed=s["committed"], accepted=s["accepted"], pending_rows=s["pending_rows"], parts=s["parts"],
            commits=s["commits"], bytes_written=s["bytes_written"], rejects_logged=s["rejects"],
            dead_letters=s["dead_letters"], kept_tokens=s["kept_tokens"], error=self.error,
        )
