"""Outputs written before schema version 2 (no ``messages`` or ``source_id`` column) still read,
resume, export and merge, alone and mixed with version 2 parts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instructflow.actors.core.exports import export_dataset
from instructflow.actors.core.merge import MergeInput, merge
from instructflow.actors.core.schema import ADDED_IN_V2, ROW_SCHEMA, SCHEMA_VERSION, rows_to_table
from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate, message
from tests.unit.actors.runs import basis, make_run, row

V1_SCHEMA = pa.schema(
    [f for f in ROW_SCHEMA if f.name not in ADDED_IN_V2], metadata={"instructflow.schema_version": "1"}
)


def v1_table(rows: list[Candidate]) -> pa.Table:
    """`rows` exactly as instructflow wrote them before version 2: the old column set."""
    table = rows_to_table(rows)
    return pa.Table.from_arrays([table.column(f.name) for f in V1_SCHEMA], schema=V1_SCHEMA)


def v1_run(root: Path) -> Path:
    """A real version 1 output: its two parts committed by the writer's own commit protocol."""
    writer = PartWriter(str(root), rows_per_part=10)
    writer.committer.commit(v1_table([row("Name a prime number.", basis(0), system="Be brief."), row("Name a colour.", basis(1))]))
    writer.committer.commit(v1_table([row("Capital of Peru?", basis(2), category="trivia")]))
    writer.close()
    assert pq.read_schema(root / "data" / "part-000001.parquet").metadata[b"instructflow.schema_version"] == b"1"
    return root


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_a_v1_output_resumes_and_exports_with_v2_parts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = v1_run(tmp_path / "old")
    jsonl_before = (root / "instructions.jsonl").read_bytes()
    chat = Candidate(
        category="rp", instruction="Hello?", response="Ahoy.", embedding=basis(3),
        messages=[message("user", "Hello?"), message("assistant", "Ahoy.", "Ann"),
                  message("user", "Where to?"), message("assistant", "West.", "Ann")],
    )
    writer = PartWriter(str(root), rows_per_part=10, exports=("jsonl", "sharegpt", "openai-chat", "alpaca"))
    assert writer.counts() == {"general": 2, "trivia": 1}  # recovered from the v1 parts
    ids, vectors = zip(*writer.iter_vectors(), strict=True)
    assert sum(len(i) for i in ids) == 3 and vectors[0].shape[1] == len(basis(0))
    assert writer.add([row("Name a prime number.", basis(0), system="Be brief."), chat])["duplicate_id"] == 1
    writer.close()
    assert (root / "instructions.jsonl").read_bytes().startswith(jsonl_before)  # appended, not rebuilt
    assert pq.read_schema(root / "data" / "part-000003.parquet").metadata[b"instructflow.schema_version"] == SCHEMA_VERSION.encode()
    sharegpt = lines(root / "exports" / "sharegpt.jsonl")
    assert sharegpt[0]["conversations"] == [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Name a prime number."},
        {"from": "gpt", "value": "Answer to: Name a prime number."},
    ]
    assert [len(r["conversations"]) for r in sharegpt] == [3, 2, 2, 4]
    assert lines(root / "exports" / "openai-chat.jsonl")[3]["messages"][1] == {"role": "assistant", "content": "Ahoy.", "name": "Ann"}
    assert len(lines(root / "exports" / "alpaca.jsonl")) == 3  # the conversation has no alpaca form
    assert "alpaca export: skipped 1 multi-turn row(s)" in caplog.text
    PartWriter(str(root)).close()  # reopening finds instructions.jsonl complete: nothing rebuilt
    assert len(lines(root / "instructions.jsonl")) == 3 + 2  # the conversation: one line per reply
    export_dataset(str(root), ["hf"])  # one schema across the folder's files, v1 rows filled
    tables = [pq.read_table(p) for p in sorted((root / "exports" / "hf").rglob("*.parquet"))]
    assert sorted(t.num_rows for t in tables) == [1, 1, 2] and all("messages" in t.column_names for t in tables)


def test_merge_of_v1_and_v2_outputs(tmp_path: Path) -> None:
    old = v1_run(tmp_path / "old")
    new = make_run(tmp_path / "new", [row("Deepest lake?", basis(4), category="trivia"), row("Name a prime number.", basis(0), system="Be brief.")])
    out = tmp_path / "merged"
    summary = merge([MergeInput("old", str(old)), MergeInput("new", str(new))], str(out))
    assert summary is not None
    table = pq.read_table(out / "data")
    got = dict(zip(table.column("instruction").to_pylist(), table.column("messages").to_pylist(), strict=True))
    assert sorted(got) == ["Capital of Peru?", "Deepest lake?", "Name a colour.", "Name a prime number."]
    assert got["Name a prime number."][0] == {"role": "system", "content": "Be brief.", "name": None}
    assert table.column("source_id").null_count == table.num_rows
    export_dataset(str(out), ["sharegpt"])
    assert len(lines(out / "exports" / "sharegpt.jsonl")) == 4
