"""The row schema, the exports (airoboros JSONL, ShareGPT, Alpaca) and reading parts with other tools."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instructflow.actors.core.exports import export_dataset
from instructflow.actors.core.schema import COLUMN_DOCS, ROW_SCHEMA, rows_to_table, table_to_rows
from instructflow.actors.core.storage import OutputError
from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate


def cand(i: int, *, system: str | None = None, category: str = "general") -> Candidate:
    return Candidate(
        category=category,
        instruction=f"Write line {i} — with ünïcode.",
        response=f"Line {i}.",
        system=system,
        skip_prompt_formatting=i % 3 == 0,
        topic="poetry" if i % 2 else None,
        model="stub",
        prompt_tokens=i,
        completion_tokens=2 * i,
        tokens_estimated=bool(i % 2),
        template_digest="abc",
        similarity=0.25 if i else None,
        verdict="good" if i % 2 else None,
        score=7.5 if i % 2 else None,
        embedding=np.full(4, i, dtype=np.float32),
        created_at=1_700_000_000.123 + i,
    )


def rows(n: int = 6) -> list[Candidate]:
    return [cand(i, system="Be brief." if i % 2 else None, category="general" if i < 4 else "trivia") for i in range(n)]


def test_schema_documents_every_column_and_round_trips() -> None:
    assert [f.name for f in ROW_SCHEMA] == list(COLUMN_DOCS)
    assert all(f.metadata[b"doc"] for f in ROW_SCHEMA)
    assert ROW_SCHEMA.field("created_at").type == pa.timestamp("ms", tz="UTC")
    assert ROW_SCHEMA.field("embedding").type == pa.list_(pa.float32())
    nullable = ["system", "topic", "source_id", "similarity", "verdict", "score", "embedding"]
    assert [f.name for f in ROW_SCHEMA if f.nullable] == nullable
    originals = rows()
    table = rows_to_table(originals)
    assert table.schema.equals(ROW_SCHEMA) and table.column("id").to_pylist() == [c.id for c in originals]
    back = table_to_rows(table)
    for before, after in zip(originals, back, strict=True):
        assert after.id == before.id and after.system == before.system and after.verdict == before.verdict
        assert after.messages is None and after.source_id is None
        assert after.created_at == pytest.approx(before.created_at, abs=1e-3)
        np.testing.assert_array_equal(after.embedding, before.embedding)
    with pytest.raises(ValueError, match="no response"):
        rows_to_table([Candidate(category="general", instruction="unanswered")])


def test_parts_read_with_pyarrow_pandas_and_duckdb(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=4)
    w.add(rows())
    w.close()
    table = pq.read_table(tmp_path / "data")
    assert table.num_rows == 6 and table.schema.names == ROW_SCHEMA.names
    frame = pd.read_parquet(tmp_path / "data")
    assert sorted(frame["id"]) == sorted(c.id for c in rows())
    assert str(frame["created_at"].dt.tz) == "UTC"
    glob = str(tmp_path / "data" / "part-*.parquet")
    counts = duckdb.sql(f"SELECT category, count(*) FROM read_parquet('{glob}') GROUP BY 1 ORDER BY 1").fetchall()
    assert counts == [("general", 4), ("trivia", 2)]
    dims = duckdb.sql(f"SELECT DISTINCT len(embedding) FROM read_parquet('{glob}')").fetchall()
    assert dims == [(4,)]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_instructions_jsonl_matches_the_parts_in_airoboros_layout(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=4)
    w.add(rows())
    w.flush()
    records = jsonl(tmp_path / "instructions.jsonl")
    parquet = pq.read_table(tmp_path / "data").to_pylist()  # part order, then row order
    assert [(r["instruction"], r["response"], r["category"]) for r in records] == [
        (p["instruction"], p["response"], p["category"]) for p in parquet
    ]
    for record, row in zip(records, parquet, strict=True):
        assert record["skip_prompt_formatting"] == row["skip_prompt_formatting"]
        assert ("system" in record) == (row["system"] is not None)
        assert set(record) <= {"instruction", "response", "category", "system", "skip_prompt_formatting"}


def test_instructions_jsonl_behind_or_torn_is_rebuilt_on_open(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=2)
    w.add(rows())
    full = (tmp_path / "instructions.jsonl").read_bytes()
    last_block = w.committer.entries[-1].jsonl_bytes
    os.truncate(tmp_path / "instructions.jsonl", len(full) - last_block)  # crash before the export append
    PartWriter(str(tmp_path))
    assert (tmp_path / "instructions.jsonl").read_bytes() == full
    os.truncate(tmp_path / "instructions.jsonl", len(full) - 7)  # a torn append
    PartWriter(str(tmp_path))
    assert (tmp_path / "instructions.jsonl").read_bytes() == full
    os.unlink(tmp_path / "instructions.jsonl")
    PartWriter(str(tmp_path))
    assert (tmp_path / "instructions.jsonl").read_bytes() == full


def test_sharegpt_and_alpaca_written_on_close(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), exports=["jsonl", "sharegpt", "alpaca"])
    w.add(rows())
    written = w.close()
    assert written == [str(tmp_path / "exports" / "sharegpt.jsonl"), str(tmp_path / "exports" / "alpaca.jsonl")]
    share = jsonl(tmp_path / "exports" / "sharegpt.jsonl")
    alpaca = jsonl(tmp_path / "exports" / "alpaca.jsonl")
    with_system, without = share[1], share[0]
    assert [t["from"] for t in with_system["conversations"]] == ["system", "human", "gpt"]
    assert [t["from"] for t in without["conversations"]] == ["human", "gpt"]
    assert with_system["conversations"][0]["value"] == "Be brief." and with_system["id"] == rows()[1].id
    assert alpaca[1] == {"instruction": f"Be brief.\n\n{rows()[1].instruction}", "input": "", "output": "Line 1."}
    assert alpaca[0]["instruction"] == rows()[0].instruction
    assert not [n for n in os.listdir(tmp_path / "exports") if ".tmp-" in n]


def test_export_dataset_rewrites_requested_formats(tmp_path: Path) -> None:
    w = PartWriter(str(tmp_path), rows_per_part=3)
    w.add(rows())
    w.close()
    (tmp_path / "instructions.jsonl").write_text("stale\n")
    paths = export_dataset(str(tmp_path), ["jsonl", "alpaca"])
    assert paths == [str(tmp_path / "instructions.jsonl"), str(tmp_path / "exports" / "alpaca.jsonl")]
    assert len(jsonl(tmp_path / "instructions.jsonl")) == len(jsonl(tmp_path / "exports" / "alpaca.jsonl")) == 6
    assert [Path(p).name for p in export_dataset(str(tmp_path))] == ["instructions.jsonl", "sharegpt.jsonl", "alpaca.jsonl"]
    with pytest.raises(ValueError, match="unknown export format"):
        export_dataset(str(tmp_path), ["csv"])
    with pytest.raises(OutputError, match="manifest.jsonl: not found"):
        export_dataset(str(tmp_path / "nothing-here"), ["alpaca"])


def test_output_docs_describe_every_column() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "output.md").read_text(encoding="utf-8")
    assert [f.name for f in ROW_SCHEMA if f"| `{f.name}` |" not in doc] == []
