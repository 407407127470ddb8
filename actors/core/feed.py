"""The source feed of a second-round category: committed rows, read from the output as they commit.

A second-round category (`instructors.derived`) consumes committed rows of its source categories.
Its instructor replicas read those rows from the output itself, the way a resumed writer does: the
manifest says which parts exist, and each part listing a wanted category is read once (a few
columns). Why the output and not a message from the writer:

- the committed parts are the only truth about what exists; a row the writer holds pending may
  still be lost, a committed one never is, so nothing is derived from a row that will not be there;
- it survives every restart on both sides: a restarted writer need not remember whom it told what,
  and a restarted instructor (or a resumed run) rebuilds its state from the same parts;
- it costs the writer nothing: one small manifest read per replica per `POLL_S` (parts are read
  once each), against one more actor call on the writer's hot path per commit.

Each replica takes the source rows whose id falls in its share (`id mod replicas`), so replicas
never use the same source; a source is used at most once: the rows this category committed carry
their source's id (`source_id`), and those sources are skipped, also by a resumed run. Sources handed
to calls that gave no row (rejected, failed) are not retried in this session; a later run retries
them. Rows of `references` categories (read, never consumed) go to every replica. A first-round
category that plays character cards (`gtkm`, `rp`, `awareness`) has a feed of references only: its
calls never wait for it, and the cards committed during the run join the ones it plays.

`RowReader` does the I/O (run it off the event loop); `SourceFeed` keeps the state and hands source
rows to the instructor, one per generating call (`reserve`). The rows on hand are kept in memory:
about the text of the replica's share of its sources' committed rows not yet used.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from instructflow.actors.core.exports import read_part
from instructflow.actors.core.manifest import PartEntry, read_manifest
from instructflow.actors.core.storage import Store
from instructflow.instructors.base import Instructor
from instructflow.instructors.derived import Derived, SourceRow

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a replica looks for newly committed parts
_COLUMNS = ["id", "category", "instruction", "response", "system", "source_id"]


@dataclass(frozen=True)
class ReadRow:
    """A committed row as the feed reads it (`source_id`: null for rows made from scratch)."""

    row: SourceRow
    source_id: str | None = None


class RowReader:
    """Reads the committed rows of `categories` from an output root, each part once, in commit order."""

    def __init__(self, store: Store, categories: Collection[str]) -> None:
        self.store = store
        self.categories = frozenset(categories)
        self.done: set[str] = set()  # parts already read

    def __call__(self) -> list[ReadRow]:
        """The wanted rows of the parts committed since the last call (a torn manifest tail, a
        commit under way, is left for the next call)."""
        rows: list[ReadRow] = []
        for entry in read_manifest(self.store).entries:
            if entry.file in self.done:
                continue
            if not self.categories.intersection(entry.categories):
                self.done.add(entry.file)
                continue
            try:
                columns, count = self._read(entry)
            except Exception:
                if rows:  # hand over what was read; the failing part is tried again next time
                    return rows
                raise
            self.done.add(entry.file)
            for i in range(count):
                if columns["category"][i] not in self.categories:
                    continue
                row = SourceRow(
                    columns["id"][i], columns["category"][i], columns["instruction"][i] or "",
                    columns["response"][i] or "", columns["system"][i],
                )
                rows.append(ReadRow(row, columns["source_id"][i]))
        return rows

    def _read(self, entry: PartEntry) -> tuple[dict[str, list[Any]], int]:
        table = read_part(self.store, entry, _COLUMNS)  # parts of schema version 1 get source_id null
        return {c: table.column(c).to_pylist() for c in _COLUMNS}, table.num_rows


@dataclass
class FeedStats:
    """One replica's source feed, as the driver reads it (see `Watchdog` in `cluster.accounting`)."""

    seen: dict[str, int] = field(default_factory=dict)  # committed rows read per source/reference category
    on_hand: int = 0  # source rows of this replica's share that are ready for a call
    used: int = 0  # sources of this share used by rows committed before this session (earlier runs)
    handed: int = 0  # source rows handed to calls in this session
    unusable: int = 0  # source rows the category cannot use (e.g. too short)
    missing: str | None = None  # why no call can start though rows are on hand (e.g. no card)
    error: str | None = None  # the last failure to read the output (retried every poll)


class SourceFeed:
    """The source rows of one replica of a second-round category (see the module docstring)."""

    def __init__(self, instructor: Instructor, replica: int = 0, replicas: int = 1) -> None:
        self.instructor = instructor
        self.category = instructor.category
        self.sources = frozenset(instructor.sources)
        self.references = frozenset(instructor.references)
        self.replica, self.replicas = replica, max(1, replicas)
        self.queue: deque[SourceRow] = deque()
        self.used: set[str] = set()  # sources handed out in this session or used by committed rows
        self.earlier = 0  # of this replica's share: sources used by rows committed before this session
        self.seen: Counter[str] = Counter()
        self.handed = 0
        self.unusable = 0
        self.error: str | None = None
        self.poll_s = POLL_S

    @property
    def categories(self) -> frozenset[str]:
        """Every category whose committed rows this feed reads (its own included, for `source_id`)."""
        return self.sources | self.references | {self.category}

    def mine(self, row_id: str) -> bool:
        """Whether a source row belongs to this replica's share."""
        try:
            return int(row_id, 16) % self.replicas == self.replica
        except ValueError:
            return hash(row_id) % self.replicas == self.replica

    def admit(self, rows: list[ReadRow]) -> int:
        """Takes newly read rows in; returns how many source rows came on hand."""
        for read in rows:  # the sources this category's committed rows used: never used again
            if read.row.category == self.category and read.source_id:
                if read.source_id not in self.used and self.mine(read.source_id):
                    self.earlier += 1
                self.used.add(read.source_id)
        added = 0
        for read in rows:
            row = read.row
            if row.category in self.references:
                self.seen[row.category] += 1
                self.instructor.refer(row)
            if row.category not in self.sources:
                continue
            self.seen[row.category] += 1
            if not self.mine(row.id) or row.id in self.used:
                continue
            if not self.instructor.usable(row):
                self.unusable += 1
                continue
            self.queue.append(row)
            added += 1
        if added:
            self.queue = deque(r for r in self.queue if r.id not in self.used)
        return added

    def reserve(self) -> bool:
        """Hands the next source row to the instructor for one generating call, which must start
        right after; False when none is on hand or the instructor cannot start a call yet. A
        category that only reads `references` needs no source row: always True."""
        if not isinstance(self.instructor, Derived):
            return True
        while self.queue and self.queue[0].id in self.used:
            self.queue.popleft()
        if not self.queue or self.missing() is not None:
            return False
        row = self.queue.popleft()
        self.used.add(row.id)
        self.instructor.offer(row)
        self.handed += 1
        return True

    def missing(self) -> str | None:
        """Why no call can start though source rows are on hand (second-round categories only)."""
        return self.instructor.missing() if isinstance(self.instructor, Derived) else None

    def failed(self, exc: BaseException) -> None:
        """Records a failure to read the output (the next poll tries again)."""
        message = f"{type(exc).__name__}: {exc}"
        if message != self.error:
            log.warning("%s: cannot read the committed rows: %s", self.category, message)
        self.error = message

    def stats(self) -> FeedStats:
        return FeedStats(
            seen=dict(self.seen), on_hand=len(self.queue), used=self.earlier, handed=self.handed,
            unusable=self.unusable, missing=self.missing(), error=self.error,
        )
