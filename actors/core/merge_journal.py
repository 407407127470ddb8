"""The merge journal: one line per input part, written *before* that part's rows are committed.

A line names the input part, the output part its kept rows go to (or none, when nothing was kept)
and what was dropped. The output manifest stays the commit point: on reopen, a line counts as done
when it kept nothing or when its output part is in the manifest. A line whose part never committed
(killed between the two) is simply redone, into the same part number, so a resumed merge ends with
exactly the output an uninterrupted one would have made.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from instructflow.actors.core.storage import OutputError, Store

JOURNAL = "merge.journal.jsonl"


@dataclass(frozen=True)
class PartResult:
    """What merging one input part did.

    Attributes:
        input: index of the input (command-line order).
        part: the input part's file (``data/part-000003.parquet``).
        out: the output part holding its kept rows, or None when none were kept.
        rows: rows in the input part.
        filtered: rows the row filter dropped (category, score).
        exact: rows dropped as exact duplicates of kept rows (same normalised system + instruction).
        near: rows dropped as near duplicates of rows kept from earlier inputs.
        kept: rows written.
        reembedded: rows whose embedding was computed here (other model, or none stored).
    """

    input: int
    part: str
    out: str | None
    rows: int
    filtered: int = 0
    exact: int = 0
    near: int = 0
    kept: int = 0
    reembedded: int = 0

    def to_line(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, separators=(",", ":")) + "\n").encode()


class Journal:
    """The journal file of one merge output; reads what is done and appends durably."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.results: dict[tuple[int, str], PartResult] = {}
        self._data = b""
        if store.size(JOURNAL) is not None:
            self._read(store.read(JOURNAL))

    def _read(self, data: bytes) -> None:
        lines = data.split(b"\n")
        valid = 0
        for number, line in enumerate(lines[:-1], start=1):  # the tail after the last newline is torn
            try:
                result = PartResult(**json.loads(line))
            except (ValueError, TypeError) as exc:
                if number == len(lines) - 1:
                    break  # a torn last line: the append it belonged to never finished
                raise OutputError(self.store.display(JOURNAL), f"line {number} is not a journal entry ({exc})") from None
            self.results[(result.input, result.part)] = result  # a redone part: the last line wins
            valid += len(line) + 1
        self._data = data[:valid]
        if valid != len(data):  # cut the torn tail so the next append starts on a line boundary
            self.store.write_atomic(JOURNAL, [self._data])

    def done(self, committed: set[str]) -> dict[tuple[int, str], PartResult]:
        """The input parts whose result stands: nothing kept, or the output part is committed."""
        return {k: r for k, r in self.results.items() if r.out is None or r.out in committed}

    def append(self, result: PartResult) -> None:
        """Records `result` durably (fsync'd append; one atomic put on object stores)."""
        line = result.to_line()
        try:
            if self.store.supports_append:
                self.store.append(JOURNAL, line, len(self._data))
            else:
                self.store.write_atomic(JOURNAL, [self._data, line])
        except OSError as exc:
            raise OutputError(exc.filename or self.store.display(JOURNAL), exc) from exc
        self._data += line
        self.results[(result.input, result.part)] = result
