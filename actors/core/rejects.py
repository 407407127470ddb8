"""Side logs of a run: rejected candidates (``rejects.jsonl``) and requests that failed for good
(``dead_letters.jsonl``).

They are for inspection, so they are buffered and written on each flush without durability
promises. Local disks append to ``<name>.jsonl``; object stores, which cannot append, get one new
object per flush under ``<name>/``. Records carry what the candidate carries and never request data
(no headers, no keys).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from instructflow.actors.core.storage import Store
from instructflow.instructors.record import Candidate

log = logging.getLogger(__name__)

REJECTS = "rejects"
DEAD_LETTERS = "dead_letters"
_FLUSH_LINES = 1000  # write early past this many buffered lines
_MAX_BUFFERED = 100_000  # when writing keeps failing, keep at most this many (oldest dropped)


def reject_record(candidate: Candidate, reason: str, detail: str | None = None) -> dict[str, Any]:
    """The rejects-file record of one candidate; a conversation's turns are in ``messages``, a
    derived row's source in ``source_id`` (both only when set)."""
    record = {
        "id": candidate.id,
        "category": candidate.category,
        "reason": reason,
        "detail": detail,
        "instruction": candidate.instruction,
        "response": candidate.response,
        "system": candidate.system,
        "topic": candidate.topic,
        "model": candidate.model,
        "similarity": candidate.similarity,
        "verdict": candidate.verdict,
        "score": candidate.score,
        "created_at": datetime.fromtimestamp(candidate.created_at, UTC).isoformat(timespec="milliseconds"),
    }
    if candidate.is_conversation:
        record["messages"] = candidate.messages
    if candidate.source_id is not None:
        record["source_id"] = candidate.source_id
    return record


class RecordLog:
    """Counts records by reason and buffers them for ``<name>.jsonl``.

    Args:
        store: the output location.
        name: ``rejects`` or ``dead_letters``.
        enabled: when False only the counts are kept.
    """

    def __init__(self, store: Store, name: str, enabled: bool = True) -> None:
        self.store, self.name, self.enabled = store, name, enabled
        self._lines: list[bytes] = []
        self._counts: Counter[str] = Counter()
        self.dropped = 0

    @property
    def file(self) -> str:
        """Where records go: the JSONL file, or the folder of per-flush objects on object stores."""
        return f"{self.name}.jsonl" if self.store.supports_append else f"{self.name}/"

    def add(self, record: dict[str, Any]) -> None:
        """Counts one record (by its ``reason``) and buffers it."""
        self._counts[str(record.get("reason") or "unknown")] += 1
        if not self.enabled:
            return
        line = json.dumps(record, ensure_ascii=False, default=_plain) + "\n"
        self._lines.append(line.encode("utf-8"))
        if len(self._lines) >= _FLUSH_LINES:
            self.flush()

    def counts(self) -> dict[str, int]:
        """Records per reason so far."""
        return dict(self._counts)

    def flush(self) -> None:
        """Writes buffered records; a failure is logged and the records kept for the next try."""
        if not self._lines:
            return
        data = b"".join(self._lines)
        try:
            if self.store.supports_append:
                self.store.append(self.file, data, self.store.size(self.file) or 0)
            else:
                self.store.makedirs(self.name)
                self.store.write(f"{self.name}/{time.time_ns()}-{secrets.token_hex(3)}.jsonl", data)
        except OSError as exc:
            log.warning("could not write %s (%s); keeping %d record(s) buffered", self.file, exc, len(self._lines))
            excess = len(self._lines) - _MAX_BUFFERED
            if excess > 0:
                del self._lines[:excess]
                self.dropped += excess
            return
        self._lines.clear()


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars and other odd values."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
