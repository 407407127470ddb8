"""`instructflow merge`: cross-dataset deduplication, filters, the source column, re-embedding, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from instructflow.actors.core.exports import export_dataset
from instructflow.actors.core.filters import RowFilter
from instructflow.actors.core.merge import (
    MERGED_SCHEMA,
    MergeError,
    MergeInput,
    merge,
    parse_inputs,
)
from instructflow.actors.core.merge_journal import PartResult
from instructflow.actors.core.writer import PartWriter
from instructflow.cluster import cli
from tests.unit.actors.runs import DIM, basis, make_run, near, row


def first(tmp_path: Path, **kwargs: object) -> Path:
    rows = [
        row("Name a prime number.", basis(0)),
        row("Name a colour.", basis(1)),
        row("Capital of Peru?", basis(2), category="trivia"),
        row("Tallest mountain?", basis(3), category="trivia"),
    ]
    return make_run(tmp_path / "a", rows, rows_per_part=2, run_id="run-a", **kwargs)


def second(tmp_path: Path, **kwargs: object) -> Path:
    rows = [
        row("name a PRIME number!", basis(6)),  # exact: same normalised text as a row of `a`
        row("Give me a colour.", near(basis(1), 0.95)),  # near: cosine 0.95 to "Name a colour."
        row("Capital of Chile?", near(basis(2), 0.85), category="trivia"),  # below 0.9: kept
        row("Deepest lake?", basis(4), category="trivia"),
        row("Deepest lake on Earth?", near(basis(4), 0.97), category="trivia"),  # alike within b: kept
    ]
    return make_run(tmp_path / "b", rows, rows_per_part=2, run_id="run-b", **kwargs)


def inputs(tmp_path: Path) -> list[MergeInput]:
    return [MergeInput("a", str(first(tmp_path))), MergeInput("b", str(second(tmp_path)))]


def merged(root: Path) -> list[tuple[str, str]]:
    table = pq.read_table(root / "data")
    return list(zip(table.column("instruction").to_pylist(), table.column("source").to_pylist(), strict=True))


def test_drops_rows_shared_across_inputs(tmp_path: Path) -> None:
    out = tmp_path / "merged"
    summary = merge(inputs(tmp_path), str(out))
    assert merged(out) == [
        ("Name a prime number.", "a"), ("Name a colour.", "a"), ("Capital of Peru?", "a"), ("Tallest mountain?", "a"),
        ("Capital of Chile?", "b"), ("Deepest lake?", "b"), ("Deepest lake on Earth?", "b"),
    ]
    assert (summary.rows, summary.exact, summary.near, summary.kept) == (9, 1, 1, 7)
    assert summary.kept_by_source == {"a": 4, "b": 3} and summary.merge_id.startswith("merge-")
    assert pq.read_schema(out / "data" / "part-000001.parquet").equals(MERGED_SCHEMA)
    vectors = np.array(pq.read_table(out / "data").column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(vectors[4], near(basis(2), 0.85), atol=1e-6)  # stored vectors carried over
    # The output is a run-like root: the writer reopens it and the exports read it.
    assert PartWriter(str(out)).stats()["committed_rows"] == 7
    assert len((out / "instructions.jsonl").read_text().splitlines()) == 7
    assert json.loads((out / "run.json").read_text())["run_id"] == summary.merge_id
    record = json.loads((out / "merge.json").read_text())
    assert record["threshold"] == 0.9 and record["summary"]["kept"] == 7
    assert [i["run_id"] for i in record["inputs"]] == ["run-a", "run-b"]


def test_filters_threshold_and_labels(tmp_path: Path) -> None:
    sources = inputs(tmp_path)
    summary = merge(sources, str(tmp_path / "trivia"), where=RowFilter(include={"trivia"}), threshold=0.8)
    assert merged(tmp_path / "trivia") == [
        ("Capital of Peru?", "a"), ("Tallest mountain?", "a"), ("Deepest lake?", "b"), ("Deepest lake on Earth?", "b"),
    ]
    assert (summary.filtered, summary.near) == (4, 1)  # Chile is 0.85 from Peru: a duplicate at 0.8
    merge(sources, str(tmp_path / "general"), where=RowFilter(exclude={"trivia"}))
    assert [s for _, s in merged(tmp_path / "general")] == ["a", "a"]
    with pytest.raises(ValueError, match="no category trivai"):
        merge(sources, str(tmp_path / "x"), where=RowFilter(exclude={"trivai"}))
    assert [i.label for i in parse_inputs(["out/run-a/", "mine=out/b"])] == ["run-a", "mine"]
    with pytest.raises(MergeError, match="NAME=PATH"):
        parse_inputs(["x/out", "y/out"])


def test_refuses_an_output_it_did_not_start(tmp_path: Path) -> None:
    sources = inputs(tmp_path)
    merge(sources, str(tmp_path / "m"))
    with pytest.raises(MergeError, match="holds another merge"):
        merge(sources, str(tmp_path / "m"), threshold=0.5)
    with pytest.raises(MergeError, match="is one of the inputs"):
        merge(sources, sources[0].root)
    with pytest.raises(MergeError, match="already holds a dataset"):
        merge(sources[:1] + [MergeInput("m", str(tmp_path / "m"))], str(tmp_path / "b"))
    with pytest.raises(MergeError, match="manifest.jsonl: not found"):
        merge([sources[0], MergeInput("none", str(tmp_path / "none"))], str(tmp_path / "n"))


class Stop(Exception):
    pass


def stop_after(parts: int):
    done: list[PartResult] = []

    def hook(result: PartResult) -> None:
        done.append(result)
        if len(done) == parts:
            raise Stop

    return hook


def snapshot(root: Path) -> tuple[list, bytes, list]:
    entries = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    table = pq.read_table(root / "data")
    return [(e["file"], e["rows"], e["sha256"]) for e in entries], (root / "instructions.jsonl").read_bytes(), table.to_pylist()


def test_a_killed_merge_resumes_to_the_same_output(tmp_path: Path) -> None:
    sources = inputs(tmp_path)
    whole = merge(sources, str(tmp_path / "whole"))
    for stop, torn in [(2, False), (4, True)]:
        out = tmp_path / f"resumed-{stop}"
        with pytest.raises(Stop):
            merge(sources, str(out), on_part=stop_after(stop))
        if torn:  # killed between the journal line and the commit: the part is an orphan
            lines = (out / "manifest.jsonl").read_bytes().splitlines(keepends=True)
            (out / "manifest.jsonl").write_bytes(b"".join(lines[:-1]))
        summary = merge(sources, str(out))
        assert summary.resumed_parts == (stop - 1 if torn else stop)
        assert snapshot(out) == snapshot(tmp_path / "whole")
        assert (summary.kept, summary.exact, summary.near, summary.parts) == (whole.kept, whole.exact, whole.near, whole.parts)


def test_reembeds_an_input_made_with_another_model(tmp_path: Path) -> None:
    a = first(tmp_path)
    b_rows = [
        row("Hue of the sky?", np.ones(3, np.float32)),  # another model's vector: embedded again
        row("Name a colour!", None),  # exact duplicate: dropped before any embedding
        row("Shade of a colour?", None),  # embedded here, then a near duplicate of "Name a colour."
    ]
    b = make_run(tmp_path / "b", b_rows, model="other-model")
    asked: list[list[str]] = []

    def encoder(model: str):
        assert model == "all-MiniLM-L6-v2"  # the first input's model

        def encode(texts: list[str]) -> np.ndarray:
            asked.append(texts)
            return np.stack([near(basis(1), 0.99) if "colour" in t else basis(7) for t in texts])

        return encode

    # Same model, but one row was stored without an embedding: only that row is embedded.
    c = make_run(tmp_path / "c", [row("Colour of grass?", None), row("Longest river?", basis(5))])
    ordered = [MergeInput("a", str(a)), MergeInput("b", str(b)), MergeInput("c", str(c))]
    summary = merge(ordered, str(tmp_path / "m"), encoder=encoder)
    assert asked == [["Hue of the sky?", "Shade of a colour?"], ["Colour of grass?"]]
    assert (summary.reembedded, summary.near, summary.exact) == (3, 2, 1)
    table = pq.read_table(tmp_path / "m" / "data")
    assert table.column("instruction").to_pylist()[4:] == ["Hue of the sky?", "Longest river?"]
    assert len(table.column("embedding")[4].as_py()) == DIM


def test_a_merged_dataset_exports_and_merges_again(tmp_path: Path) -> None:
    sources = inputs(tmp_path)
    merge(sources, str(tmp_path / "ab"))
    export_dataset(str(tmp_path / "ab"), ["hf", "openai-chat"])
    card = (tmp_path / "ab" / "exports" / "hf" / "README.md").read_text()
    assert "| `a` | `run-a` |" in card and "Rows per source: `a` 4, `b` 3" in card
    assert pq.read_table(tmp_path / "ab" / "exports" / "hf" / "data").column_names[-1] == "source"
    c = make_run(tmp_path / "c", [row("Name a colour.", basis(1)), row("Longest river?", basis(5))])
    merge([MergeInput("c", str(c)), MergeInput("ab", str(tmp_path / "ab"))], str(tmp_path / "abc"))
    sources_of = dict(merged(tmp_path / "abc"))
    assert sources_of["Longest river?"] == "c" and sources_of["Deepest lake?"] == "ab/b"
    assert sources_of["Name a colour."] == "c"


def test_cli_merges_and_names_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = first(tmp_path), second(tmp_path)
    out = tmp_path / "cli"
    assert cli.main(["merge", str(a), f"mine={b}", "--out", str(out), "--exclude-category", "general"]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: 5 of 9 rows kept in 3 parts" in printed and "4 filtered" in printed
    assert [s for _, s in merged(out)] == ["a", "a", "mine", "mine", "mine"]
    with pytest.raises(SystemExit, match="has no category trivai"):
        cli.main(["merge", str(a), str(b), "--out", str(tmp_path / "x"), "--include-category", "trivai"])
