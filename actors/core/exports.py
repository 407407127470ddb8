"""Trainer-ready exports of the committed rows: one JSON Lines file per format, or a Hugging Face folder.

``instructions.jsonl`` (airoboros' layout) follows the parts as they commit: on a local disk one
block of lines is appended after each manifest append, and a reopened writer rebuilds it atomically
from the parts when its size disagrees with the manifest (a crash between the two appends). Object
stores cannot append, so there it is rebuilt on close. The other files are written whole, atomically,
on close (``writer.exports``) or by `export_dataset`. Every export lists rows in manifest order, then
row order in a part.

Each JSONL format is one function from a row to its records (one, several for a conversation in a
one-response layout, or none for a row the format cannot hold), registered with `export_format`;
the formats and their exact layouts are described in docs/output.md ("Exports"), and how they lay
out a conversation in `export_turns`. ``hf`` is a folder
(Parquet per category and a dataset card), written by `hf_export.write_hf_folder`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from instructflow.actors.core.export_turns import (
    exchanges,
    flat_turns,
    is_multi_turn,
    openai_name,
    row_turns,
    trained,
)
from instructflow.actors.core.filters import RowFilter
from instructflow.actors.core.manifest import MANIFEST, PartEntry, read_manifest
from instructflow.actors.core.schema import UPGRADE_INPUTS, upgrade_table
from instructflow.actors.core.storage import OutputError, Store, open_store

INSTRUCTIONS = "instructions.jsonl"
HF_FOLDER = "exports/hf"
DEFAULT_FORMATS = ("jsonl", "sharegpt", "alpaca")  # what `export_dataset` writes when asked for none
_COLUMNS = ["id", "category", "instruction", "response", "system", "messages", "skip_prompt_formatting"]

Record = Callable[[dict[str, Any]], dict[str, Any] | list[dict[str, Any]]]


@dataclass(frozen=True)
class ExportFormat:
    """One JSON Lines export: its name, its file (relative to the destination root) and the function
    that turns a row (a dict of `_COLUMNS`) into one record, or a list of them (empty: the format
    cannot hold the row, which is counted as skipped)."""

    name: str
    file: str
    record: Record


FORMATS: dict[str, ExportFormat] = {}


def export_format(name: str, file: str) -> Callable[[Record], Record]:
    """Registers the decorated row -> record function as the JSONL export `name`, written to `file`."""

    def register(record: Record) -> Record:
        FORMATS[name] = ExportFormat(name, file, record)
        return record

    return register


def _transcript(history: list[dict[str, Any]], sep: str) -> str:
    """Turns written out as an already formatted prompt: the system text, then ``USER: `` and
    ``ASSISTANT: `` turns, joined by `sep`, ending with the ``ASSISTANT: `` the reply follows."""
    parts = [t["content"] if t["role"] == "system" else f"{t['role'].upper()}: {t['content']}" for t in history]
    return sep.join([*parts, "ASSISTANT: "])


@export_format("jsonl", INSTRUCTIONS)
def airoboros_record(row: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    """A row in airoboros' field layout. A conversation gives one record per assistant reply,
    whose instruction is the formatted transcript before it (system text, then ``USER:`` and
    ``ASSISTANT:`` lines), flagged ``skip_prompt_formatting``."""
    turns = row_turns(row)
    if is_multi_turn(turns):
        return [
            {"instruction": _transcript(history, "\n"), "response": reply["content"], "category": row["category"], "skip_prompt_formatting": True}
            for history, reply in exchanges(flat_turns(turns))
        ]
    record: dict[str, Any] = {"instruction": row["instruction"], "response": row["response"], "category": row["category"]}
    if row.get("system"):
        record["system"] = row["system"]
    record["skip_prompt_formatting"] = bool(row.get("skip_prompt_formatting"))
    return record


@export_format("sharegpt", "exports/sharegpt.jsonl")
def sharegpt_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a ShareGPT conversation: every turn, human and gpt alternating (`flat_turns`)."""
    speaker = {"system": "system", "user": "human", "assistant": "gpt"}
    turns = [{"from": speaker[t["role"]], "value": t["content"]} for t in flat_turns(row_turns(row))]
    return {"id": row["id"], "category": row["category"], "conversations": turns}


# A closed-context instruction: input blocks, then the task between BEGININSTRUCTION/ENDINSTRUCTION
# (the layout `instructors._textparse.format_input` writes for contextual categories).
_CONTEXTUAL = re.compile(r"\A\s*(BEGININPUT\b.*\bENDINPUT)\s*BEGININSTRUCTION\s*(.*?)\s*ENDINSTRUCTION\s*\Z", re.DOTALL)


def split_context(instruction: str) -> tuple[str, str]:
    """(task, input) of a closed-context instruction: the BEGININPUT ... ENDINPUT blocks verbatim as
    the input and the text between BEGININSTRUCTION and ENDINSTRUCTION as the task; any other
    instruction is returned whole with an empty input."""
    match = _CONTEXTUAL.match(instruction)
    return (match.group(2), match.group(1)) if match else (instruction, "")


@export_format("alpaca", "exports/alpaca.jsonl")
def alpaca_record(row: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    """A row in Alpaca's layout: context blocks go to ``input`` (`split_context`); Alpaca has no
    system field, so a system prompt is folded into the instruction. Alpaca has no turns either, so
    a conversation is skipped."""
    if is_multi_turn(row_turns(row)):
        return []
    task, context = split_context(row["instruction"])
    instruction = f"{row['system']}\n\n{task}" if row.get("system") else task
    return {"instruction": instruction, "input": context, "output": row["response"]}


AIROBOROS_PREAMBLE = "A chat."  # the default system prompt of the airoboros 2.x models


def airoboros2_prompt(instruction: str, system: str | None = None, skip_formatting: bool = False) -> str:
    """The prompt an airoboros 2.0 model is trained on: the system prompt (``A chat.`` when the row
    has none), one space, ``USER: ``, the instruction, one space, ``ASSISTANT: `` (the answer follows
    the final space). An instruction flagged `skip_formatting` is already a whole prompt and is
    returned unchanged."""
    if skip_formatting:
        return instruction
    return f"{system or AIROBOROS_PREAMBLE} USER: {instruction} ASSISTANT: "


@export_format("airoboros-2.0", "exports/airoboros-2.0.jsonl")
def airoboros2_record(row: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    """A row as a prompt/completion pair in the airoboros 2.0 prompt format. A conversation gives
    one pair per assistant reply, its prompt the transcript before it in the same format."""
    turns = row_turns(row)
    if is_multi_turn(turns):
        out = []
        for history, reply in exchanges(flat_turns(turns)):
            if not history or history[0]["role"] != "system":
                history = [{"role": "system", "content": AIROBOROS_PREAMBLE}, *history]
            out.append({"id": row["id"], "category": row["category"], "prompt": _transcript(history, " "), "completion": reply["content"]})
        return out
    prompt = airoboros2_prompt(row["instruction"], row.get("system"), bool(row.get("skip_prompt_formatting")))
    return {"id": row["id"], "category": row["category"], "prompt": prompt, "completion": row["response"]}


@export_format("openai-chat", "exports/openai-chat.jsonl")
def openai_chat_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as an OpenAI chat fine-tuning example: only ``messages`` (the fine-tuning API refuses
    other keys), every turn up to the last assistant reply, each speaker's name in ``name``
    (`openai_name`)."""
    messages = []
    for t in trained(row_turns(row)):
        message = {"role": t["role"], "content": t["content"]}
        name = openai_name(t.get("name"))
        if name:
            message["name"] = name
        messages.append(message)
    return {"messages": messages}


EXPORT_FILES: dict[str, str] = {name: f.file for name, f in FORMATS.items()}
FORMATTERS: dict[str, Record] = {name: f.record for name, f in FORMATS.items()}


def encode_rows(table: pa.Table, fmt: str = "jsonl", skipped: Counter[str] | None = None) -> bytes:
    """The export lines of `table`'s rows in format `fmt` (deterministic: same rows, same bytes).
    Rows the format cannot hold are counted in `skipped` under `fmt`."""
    format_row = FORMATTERS[fmt]
    columns = [c for c in _COLUMNS if c in table.column_names]
    lines = []
    for row in table.select(columns).to_pylist():
        out = format_row(row)
        records = out if isinstance(out, list) else [out]
        if not records and skipped is not None:
            skipped[fmt] += 1
        lines += [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    return "".join(lines).encode("utf-8")


def read_part(store: Store, entry: PartEntry, columns: Sequence[str] | None = None) -> pa.Table:
    """Reads (some columns of) one committed part. A part of an older schema version gets the
    columns it lacks filled as `upgrade_table` does, so every reader sees the current schema."""
    path, wanted = store.path(entry.file), list(columns) if columns else None
    try:
        table = pq.read_table(path, columns=wanted, filesystem=store.filesystem)
    except pa.ArrowInvalid:
        have = pq.read_schema(path, filesystem=store.filesystem).names
        if wanted is None or all(c in have for c in wanted):
            raise  # not a missing column: a damaged part
        basis = [c for c in dict.fromkeys([*wanted, *UPGRADE_INPUTS]) if c in have]
        return upgrade_table(pq.read_table(path, columns=basis, filesystem=store.filesystem)).select(wanted)
    return upgrade_table(table) if wanted is None else table


def _export_chunks(
    store: Store, entries: Iterable[PartEntry], fmt: str, where: RowFilter, skipped: Counter[str] | None
) -> Iterator[bytes]:
    columns = _COLUMNS + ["score"] if where.min_score is not None else _COLUMNS
    for entry in entries:
        if not any(where.keeps_category(c) for c in entry.categories):
            continue  # no wanted category in this part: skip it unread
        yield encode_rows(where.apply(read_part(store, entry, columns)), fmt, skipped)


def write_export(
    store: Store,
    entries: Sequence[PartEntry],
    fmt: str,
    where: RowFilter | None = None,
    dest: Store | None = None,
    skipped: Counter[str] | None = None,
) -> str:
    """Rewrites the export file of `fmt` from `entries` of `store` (into `dest`, by default the
    same root); returns its location. Rows the format cannot hold are counted in `skipped`."""
    dest = dest or store
    rel = EXPORT_FILES[fmt]
    dest.write_atomic(rel, _export_chunks(store, entries, fmt, where or RowFilter(), skipped))
    return dest.display(rel)


def jsonl_is_complete(store: Store, entries: Sequence[PartEntry]) -> bool:
    """True when ``instructions.jsonl`` holds exactly the committed parts' lines (checked by size)."""
    return (store.size(INSTRUCTIONS) or 0) == sum(e.jsonl_bytes for e in entries)


def all_formats() -> list[str]:
    """Every name `export_dataset` accepts: the JSONL formats, then ``hf``."""
    return [*FORMATS, "hf"]


def export_dataset(
    root: str,
    formats: Sequence[str] | None = None,
    *,
    where: RowFilter | None = None,
    to: str | None = None,
    license: str = "other",
    skipped: Counter[str] | None = None,
) -> list[str]:
    """Writes the given export formats of a run's committed rows; returns the written locations.

    Reads only what the manifest lists (a torn last manifest line is ignored, nothing is repaired or
    deleted). Rewriting ``jsonl`` while a writer is still running on `root` is not safe.

    Args:
        root: the run's output root (local path or filesystem URI).
        formats: names from `all_formats`; None or empty means `DEFAULT_FORMATS`.
        where: which rows to export (default: every committed row).
        to: write under this root instead of `root`, at the same relative paths.
        license: the license id the ``hf`` dataset card declares.
        skipped: counts, per format, the rows that format cannot hold (conversations in ``alpaca``).

    Raises:
        ValueError: an unknown format or filter category, or a filtered ``jsonl`` export into `root`
            itself (``instructions.jsonl`` there mirrors every committed row).
        OutputError: `root` holds no manifest, or the output cannot be read or written.
    """
    formats = list(formats or DEFAULT_FORMATS)
    unknown = [f for f in formats if f not in all_formats()]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {all_formats()}")
    where = where or RowFilter()
    if where.active and to is None and "jsonl" in formats:
        raise ValueError(
            f"a filtered jsonl export would replace {INSTRUCTIONS}, which mirrors every committed row; "
            "write it elsewhere with --to DIR"
        )
    store = open_store(root)
    try:
        if store.size(MANIFEST) is None:
            raise OutputError(store.display(MANIFEST), "not found: is this an instructflow output directory?")
        entries = read_manifest(store).entries
        where.check({c for e in entries for c in e.categories}, store.display())
        dest = open_store(to) if to is not None else store
        dest.makedirs("")
        written = []
        for fmt in formats:
            if fmt == "hf":
                from instructflow.actors.core.hf_export import write_hf_folder

                written.append(write_hf_folder(store, entries, dest, where=where, license=license))
            else:
                written.append(write_export(store, entries, fmt, where, dest, skipped))
        return written
    except OSError as exc:
        raise OutputError(exc.filename or store.display(), exc) from exc
