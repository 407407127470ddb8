"""The manifest: one JSON line per committed Parquet part, the only truth about what exists.

A part is committed when its line is durably in ``manifest.jsonl``. Reading is forgiving in exactly
one way: the last line may be torn (a crash during the append), and a torn or unparsable last line is
reported so the writer can cut it away. A bad line anywhere else is corruption and an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from instructflow.actors.core.storage import OutputError, Store

MANIFEST = "manifest.jsonl"
DATA_DIR = "data"
_PART = re.compile(r"^part-(\d{6,})\.parquet$")


def part_file(number: int) -> str:
    """Relative path of part `number`, e.g. ``data/part-000007.parquet``."""
    return f"{DATA_DIR}/part-{number:06d}.parquet"


def part_number(name: str) -> int | None:
    """The number in a part file name (with or without ``data/``), or None for other names."""
    match = _PART.match(name.rpartition("/")[2])
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class PartEntry:
    """One committed part, as recorded in the manifest.

    Attributes:
        file: path relative to the output root (``data/part-000007.parquet``).
        rows: number of rows in the part.
        bytes: size of the file in bytes.
        min_id: smallest row id in the part.
        max_id: largest row id in the part.
        sha256: hex digest of the file's bytes.
        categories: rows per category in the part.
        created_at: commit time, ISO 8601 UTC.
        run_id: run id of the writer that committed the part.
        jsonl_bytes: bytes this part contributes to ``instructions.jsonl`` (lets a reopened writer
            tell, from the file size alone, whether that export is complete).
    """

    file: str
    rows: int
    bytes: int
    min_id: str
    max_id: str
    sha256: str
    categories: dict[str, int] = field(default_factory=dict)
    created_at: str = ""
    run_id: str = ""
    jsonl_bytes: int = 0

    def to_line(self) -> bytes:
        """The manifest line for this entry, newline included."""
        return (json.dumps(asdict(self), sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_line(cls, line: bytes) -> PartEntry:
        """Parses one manifest line; raises ValueError when it is not a complete entry."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        entry = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        if part_number(entry.file) is None or entry.rows < 1 or len(entry.sha256) != 64:
            raise ValueError("incomplete entry")
        return entry


@dataclass
class ManifestState:
    """What `read_manifest` found.

    Attributes:
        entries: committed parts, in commit order.
        valid: the bytes of the complete, valid lines (a prefix of the file).
        torn: True when the file has bytes past `valid` (a torn last line to cut away).
    """

    entries: list[PartEntry]
    valid: bytes
    torn: bool


def parse_manifest(data: bytes, where: str) -> ManifestState:
    """Parses manifest bytes; `where` names the file in errors.

    Raises:
        OutputError: a line other than the last is not a valid entry, or a part is listed twice.
    """
    entries: list[PartEntry] = []
    seen: set[str] = set()
    offset = 0
    lines = data.split(b"\n")
    for index, line in enumerate(lines):
        is_last = index >= len(lines) - 2  # the final complete line, or the unterminated tail
        end = offset + len(line) + 1
        if index == len(lines) - 1:  # bytes after the last newline: torn unless empty
            return ManifestState(entries, data[:offset], torn=bool(line))
        try:
            entry = PartEntry.from_line(line)
        except (ValueError, TypeError) as exc:
            if is_last:
                return ManifestState(entries, data[:offset], torn=True)
            raise OutputError(where, f"line {index + 1} is not a valid manifest entry ({exc})") from None
        if entry.file in seen:
            raise OutputError(where, f"line {index + 1} lists {entry.file} a second time")
        seen.add(entry.file)
        entries.append(entry)
        offset = end
    return ManifestState(entries, data, torn=False)  # unreachable: split always yields a tail


def read_manifest(store: Store) -> ManifestState:
    """Reads the manifest of `store` (an absent manifest is an empty one)."""
    if store.size(MANIFEST) is None:
        return ManifestState([], b"", torn=False)
    return parse_manifest(store.read(MANIFEST), store.display(MANIFEST))
