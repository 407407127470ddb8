"""The one Arrow schema for accepted rows, and conversion between candidates and Arrow tables.

Every Parquet part of a run has exactly this schema. Each field carries its description in the
field metadata (key ``doc``), so the meaning of a column travels with the file; `COLUMN_DOCS`
holds the same text for documentation and tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from instructflow.instructors.record import Candidate, conversation

SCHEMA_VERSION = "2"
"""Version 2 added ``messages`` and ``source_id``; version 1 parts still read (see `upgrade_table`)."""

COLUMN_DOCS: dict[str, str] = {
    "id": "Deterministic row id: blake2b of the normalised (system, instruction); equals Candidate.id. "
    "The same instruction always gets the same id, which is how a resumed run skips committed rows.",
    "category": "Instructor category that produced the row (e.g. 'general', 'trivia').",
    "instruction": "The instruction (user turn) exactly as the teacher wrote it.",
    "response": "The teacher's answer to the instruction.",
    "system": "System prompt the row should be trained with; null when the category sets none.",
    "messages": "The whole conversation as a list of turns {role: system|user|assistant, content, "
    "name: the speaker's name or null}. Never null: a single-turn row holds its one exchange (the "
    "system turn when set, the instruction, the response); a multi-turn row holds every turn, and its "
    "instruction and response columns repeat its first user and first assistant turn.",
    "skip_prompt_formatting": "airoboros flag: true when the instruction is already fully formatted "
    "and a trainer should not wrap it in a prompt template.",
    "topic": "Topic the instructor drew for this row; null when the category does not use topics or "
    "the run has no topics (topics.file: null).",
    "source_id": "Id of the committed row this row was derived from (a re-answer or a correction of "
    "an earlier row); null for a row made from scratch.",
    "model": "Teacher model name that generated the row.",
    "prompt_tokens": "Prompt tokens spent on this row over all of its teacher calls.",
    "completion_tokens": "Completion tokens spent on this row over all of its teacher calls.",
    "tokens_estimated": "True when some call reported no usage and the token counts were estimated.",
    "template_digest": "Digests of every prompt template that went into the row (12 hex digits of the "
    "template's sha256 each, joined by '+' in the order first used, the generating template first): "
    "the generating, answering and any intermediate call's template, a system prompt's own template, "
    "and the LLM judge's. Traces a row to the template versions that made it.",
    "similarity": "Cosine similarity to the nearest instruction this one was compared with when it "
    "was accepted (the index of accepted instructions, and earlier accepted members of its batch); "
    "null when it was compared with nothing (an empty index: the first rows of a run). The halves of "
    "a counterfactual pair are not compared with each other.",
    "verdict": "LLM judge verdict text (e.g. 'accept'); null when no LLM judge ran (judge.llm.enabled "
    "false): a row that passed only the rule filters carries no verdict.",
    "score": "LLM judge score (0-10); null when no LLM judge ran.",
    "created_at": "When the candidate was created (UTC, millisecond precision).",
    "embedding": "Unit-length sentence embedding of the instruction (of a conversation: its system prompt "
    "and first user turn, see record.novelty_text) from the novelty stage; a resumed "
    "run rebuilds its novelty index from this column instead of re-encoding. Null if none was computed.",
}


def _field(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": COLUMN_DOCS[name]})


MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string(), nullable=False),
        pa.field("content", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=True),
    ]
)


ROW_SCHEMA: pa.Schema = pa.schema(
    [
        _field("id", pa.string()),
        _field("category", pa.string()),
        _field("instruction", pa.string()),
        _field("response", pa.string()),
        _field("system", pa.string(), nullable=True),
        _field("messages", pa.list_(pa.field("item", MESSAGE_TYPE, nullable=False))),
        _field("skip_prompt_formatting", pa.bool_()),
        _field("topic", pa.string(), nullable=True),
        _field("source_id", pa.string(), nullable=True),
        _field("model", pa.string()),
        _field("prompt_tokens", pa.int64()),
        _field("completion_tokens", pa.int64()),
        _field("tokens_estimated", pa.bool_()),
        _field("template_digest", pa.string()),
        _field("similarity", pa.float32(), nullable=True),
        _field("verdict", pa.string(), nullable=True),
        _field("score", pa.float32(), nullable=True),
        _field("created_at", pa.timestamp("ms", tz="UTC")),
        _field("embedding", pa.list_(pa.float32()), nullable=True),
    ],
    metadata={"instructflow.schema_version": SCHEMA_VERSION},
)


ADDED_IN_V2 = ("messages", "source_id")
UPGRADE_INPUTS = ("instruction", "response", "system")  # what `upgrade_table` derives `messages` from


def upgrade_table(table: pa.Table) -> pa.Table:
    """Fills the columns a part of an older schema version lacks, so every reader sees this one:
    ``messages`` becomes each row's one exchange (version 1 rows are all single-turn; it needs the
    `UPGRADE_INPUTS` columns) and ``source_id`` null. Columns come back in `ROW_SCHEMA` order, others
    (a merge's ``source``) after them; a table with nothing missing is returned as it is.

    Raises:
        KeyError: ``messages`` is missing and so is ``instruction`` or ``response``.
    """
    missing = [n for n in ADDED_IN_V2 if n not in table.column_names]
    if not missing:
        return table
    filled: dict[str, pa.Array] = {}
    if "messages" in missing:
        system = table.column("system").to_pylist() if "system" in table.column_names else [None] * table.num_rows
        turns = [
            conversation(Candidate(category="", instruction=i, response=r, system=s))
            for i, r, s in zip(table.column("instruction").to_pylist(), table.column("response").to_pylist(), system, strict=True)
        ]
        filled["messages"] = pa.array(turns, type=ROW_SCHEMA.field("messages").type)
    if "source_id" in missing:
        filled["source_id"] = pa.nulls(table.num_rows, pa.string())
    known = [f.name for f in ROW_SCHEMA if f.name in table.column_names or f.name in filled]
    names = known + [n for n in table.column_names if n not in known]
    fields = [ROW_SCHEMA.field(n) if n in filled else table.schema.field(n) for n in names]
    metadata = {**(table.schema.metadata or {}), b"instructflow.schema_version": SCHEMA_VERSION.encode()}
    arrays = [filled[n] if n in filled else table.column(n) for n in names]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def _embedding_array(vectors: list[object]) -> pa.Array:
    """Builds the list<float32> column from one flat buffer (much faster than per-row lists)."""
    arrays = [None if v is None else np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors]
    lengths = np.array([0 if a is None else a.size for a in arrays], dtype=np.int32)
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [a for a in arrays if a is not None]
    values = np.concatenate(present) if present else np.zeros(0, dtype=np.float32)
    mask = pa.array([a is None for a in arrays], type=pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.float32()), mask=mask)


def rows_to_table(candidates: Iterable[Candidate]) -> pa.Table:
    """Converts accepted candidates into a table of `ROW_SCHEMA`.

    Args:
        candidates: answered candidates (``response`` set).

    Returns:
        A table with one row per candidate, in order.

    Raises:
        ValueError: a candidate has no response or no category.
    """
    rows = list(candidates)
    for c in rows:
        if c.response is None or not c.category:
            raise ValueError(f"row {c.id} cannot be stored: it has no response or no category")
    columns = {
        "id": [c.id for c in rows],
        "category": [c.category for c in rows],
        "instruction": [c.instruction for c in rows],
        "response": [c.response for c in rows],
        "system": [c.system for c in rows],
        "messages": [conversation(c) for c in rows],
        "skip_prompt_formatting": [bool(c.skip_prompt_formatting) for c in rows],
        "topic": [c.topic for c in rows],
        "source_id": [c.source_id for c in rows],
        "model": [c.model or "" for c in rows],
        "prompt_tokens": [int(c.prompt_tokens) for c in rows],
        "completion_tokens": [int(c.completion_tokens) for c in rows],
        "tokens_estimated": [bool(c.tokens_estimated) for c in rows],
        "template_digest": [c.template_digest or "" for c in rows],
        "similarity": [None if c.similarity is None else float(c.similarity) for c in rows],
        "verdict": [c.verdict for c in rows],
        "score": [None if c.score is None else float(c.score) for c in rows],
        "created_at": [int(round(c.created_at * 1000)) for c in rows],
    }
    arrays = [
        _embedding_array([c.embedding for c in rows]) if f.name == "embedding" else pa.array(columns[f.name], type=f.type)
        for f in ROW_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=ROW_SCHEMA)


def table_to_rows(table: pa.Table) -> list[Candidate]:
    """Converts a table of `ROW_SCHEMA` (or a column subset that includes ``category`` and
    ``instruction``) back into candidates; embeddings come back as float32 numpy vectors."""
    rows = []
    for rec in table.to_pylist():
        rec.pop("id", None)  # derived from instruction and system, never stored on the candidate
        created = rec.pop("created_at", None)
        vector = rec.pop("embedding", None)
        turns = rec.pop("messages", None)
        candidate = Candidate(**rec)
        if turns is not None and turns != conversation(candidate):
            candidate.messages = turns  # single-turn rows keep None, so they compare equal as before
        if isinstance(created, datetime):
            candidate.created_at = created.replace(tzinfo=created.tzinfo or UTC).timestamp()
        if vector is not None:
            candidate.embedding = np.asarray(vector, dtype=np.float32)
        rows.append(candidate)
    return rows
