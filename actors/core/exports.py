"""Trainer-ready exports of the committed rows: airoboros JSONL, ShareGPT and Alpaca.

``instructions.jsonl`` (airoboros' layout) follows the parts as they commit: on a local disk one
block of lines is appended after each manifest append, and a reopened writer rebuilds it atomically
from the parts when its size disagrees with the manifest (a crash between the two appends). Object
stores cannot append, so there it is rebuilt on close. ShareGPT and Alpaca are written whole, atomically,
on close or by `export_dataset`. Every export lists rows in manifest order, then row order in a part.

Formats (one JSON object per line, UTF-8):

- ``jsonl`` -> ``instructions.jsonl``: ``instruction``, ``response``, ``category``, ``system`` (only
  when the row has one), ``skip_prompt_formatting``.
- ``sharegpt`` -> ``exports/sharegpt.jsonl``: ``id``, ``category`` and ``conversations``, a list of
  ``{"from": "system"|"human"|"gpt", "value": ...}`` turns (the system turn only when there is one).
- ``alpaca`` -> ``exports/alpaca.jsonl``: ``instruction``, ``input``, ``output``. Alpaca has no system
  field, so a system prompt is folded into the instruction: ``<system>\\n\\n<instruction>``; ``input``
  is always empty because instructflow's instructions carry their context inline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from instructflow.actors.core.manifest import MANIFEST, PartEntry, read_manifest
from instructflow.actors.core.storage import OutputError, Store, open_store

INSTRUCTIONS = "instructions.jsonl"
EXPORT_FILES = {"jsonl": INSTRUCTIONS, "sharegpt": "exports/sharegpt.jsonl", "alpaca": "exports/alpaca.jsonl"}
_COLUMNS = ["id", "category", "instruction", "response", "system", "skip_prompt_formatting"]


def airoboros_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row in airoboros' field layout."""
    record: dict[str, Any] = {"instruction": row["instruction"], "response": row["response"], "category": row["category"]}
    if row.get("system"):
        record["system"] = row["system"]
    record["skip_prompt_formatting"] = bool(row.get("skip_prompt_formatting"))
    return record


def sharegpt_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a ShareGPT conversation."""
    turns = [{"from": "system", "value": row["system"]}] if row.get("system") else []
    turns += [{"from": "human", "value": row["instruction"]}, {"from": "gpt", "value": row["response"]}]
    return {"id": row["id"], "category": row["category"], "conversations": turns}


def alpaca_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row in Alpaca's layout (system prompt folded into the instruction, see module docs)."""
    instruction = f"{row['system']}\n\n{row['instruction']}" if row.get("system") else row["instruction"]
    return {"instruction": instruction, "input": "", "output": row["response"]}


FORMATTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "jsonl": airoboros_record,
    "sharegpt": sharegpt_record,
    "alpaca": alpaca_record,
}


def encode_rows(table: pa.Table, fmt: str = "jsonl") -> bytes:
    """The export lines of `table`'s rows in format `fmt` (deterministic: same rows, same bytes)."""
    format_row = FORMATTERS[fmt]
    columns = [c for c in _COLUMNS if c in table.column_names]
    lines = (json.dumps(format_row(r), ensure_ascii=False) + "\n" for r in table.select(columns).to_pylist())
    return "".join(lines).encode("utf-8")


def read_part(store: Store, entry: PartEntry, columns: Sequence[str] | None = None) -> pa.Table:
    """Reads (some columns of) one committed part."""
    return pq.read_table(store.path(entry.file), columns=list(columns) if columns else None, filesystem=store.filesystem)


def _export_chunks(store: Store, entries: Iterable[PartEntry], fmt: str) -> Iterator[bytes]:
    for entry in entries:
        yield encode_rows(read_part(store, entry, _COLUMNS), fmt)


def write_export(store: Store, entries: Sequence[PartEntry], fmt: str) -> str:
    """Rewrites the export file of `fmt` from `entries`; returns its location."""
    rel = EXPORT_FILES[fmt]
    store.write_atomic(rel, _export_chunks(store, entries, fmt))
    return store.display(rel)


def jsonl_is_complete(store: Store, entries: Sequence[PartEntry]) -> bool:
    """True when ``instructions.jsonl`` holds exactly the committed parts' lines (checked by size)."""
    return (store.size(INSTRUCTIONS) or 0) == sum(e.jsonl_bytes for e in entries)


def export_dataset(root: str, formats: Sequence[str] | None = None) -> list[str]:
    """Writes the given export formats of a run's committed rows; returns the written locations.

    Reads only what the manifest lists (a torn last manifest line is ignored, nothing is repaired or
    deleted). Rewriting ``jsonl`` while a writer is still running on `root` is not safe.

    Args:
        root: the run's output root (local path or filesystem URI).
        formats: any of ``jsonl``, ``sharegpt``, ``alpaca``; None or empty means all three.

    Raises:
        ValueError: an unknown format.
        OutputError: `root` holds no manifest, or the output cannot be read or written.
    """
    formats = list(formats or EXPORT_FILES)
    unknown = [f for f in formats if f not in EXPORT_FILES]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {sorted(EXPORT_FILES)}")
    store = open_store(root)
    try:
        if store.size(MANIFEST) is None:
            raise OutputError(store.display(MANIFEST), "not found: is this an instructflow output directory?")
        entries = read_manifest(store).entries
        return [write_export(store, entries, fmt) for fmt in formats]
    except OSError as exc:
        raise OutputError(exc.filename or store.display(), exc) from exc
