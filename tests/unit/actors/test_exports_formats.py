"""Export formats (airoboros 2.0, OpenAI chat, Alpaca with input), row filters, and the Hugging Face folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from instructflow.actors.core.exports import airoboros2_prompt, export_dataset, split_context
from instructflow.actors.core.filters import RowFilter
from instructflow.actors.core.writer import PartWriter
from instructflow.cluster import cli
from instructflow.instructors._textparse import format_input
from tests.unit.actors.runs import basis, make_run, row

CONTEXTUAL = format_input([({"date": "2024-03-14", "author": "P. Voss"}, "The lamp flashes twice.")], "How often does it flash?")


def sample(root: Path) -> Path:
    rows = [
        row("Name a prime.", basis(0), score=8.0),
        row("Name a colour.", basis(1), system="Be brief.", score=4.0),
        row(CONTEXTUAL, basis(2), category="contextual", score=9.0),
        row("Capital of Peru?", basis(3), category="trivia"),  # never judged: no score
        row("Tallest mountain?", basis(4), category="trivia", score=6.5),
    ]
    return make_run(root, rows, run_id="abc123", teacher="gpt-test")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_airoboros_2_0_prompt_spacing_is_exact() -> None:
    assert airoboros2_prompt("Name a prime.") == "A chat. USER: Name a prime. ASSISTANT: "
    assert airoboros2_prompt("Hi\nthere", "You are Tom.") == "You are Tom. USER: Hi\nthere ASSISTANT: "
    assert airoboros2_prompt("Already formatted.", "ignored", skip_formatting=True) == "Already formatted."


def test_jsonl_formats_are_exact(tmp_path: Path) -> None:
    root = sample(tmp_path / "run")
    export_dataset(str(root), ["airoboros-2.0", "openai-chat", "alpaca"])
    air = lines(root / "exports" / "airoboros-2.0.jsonl")
    chat = lines(root / "exports" / "openai-chat.jsonl")
    alpaca = lines(root / "exports" / "alpaca.jsonl")
    assert [r["category"] for r in air] == ["general", "general", "contextual", "trivia", "trivia"]
    assert air[1] == {
        "id": air[1]["id"], "category": "general",
        "prompt": "Be brief. USER: Name a colour. ASSISTANT: ", "completion": "Answer to: Name a colour.",
    }
    assert air[2]["prompt"] == f"A chat. USER: {CONTEXTUAL} ASSISTANT: "
    assert chat[0] == {"messages": [
        {"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Answer to: Name a prime."},
    ]}
    assert chat[1]["messages"][0] == {"role": "system", "content": "Be brief."} and list(chat[1]) == ["messages"]
    assert alpaca[1] == {"instruction": "Be brief.\n\nName a colour.", "input": "", "output": "Answer to: Name a colour."}
    assert alpaca[2] == {
        "instruction": "How often does it flash?",
        "input": "BEGININPUT\nBEGINCONTEXT\ndate: 2024-03-14\nauthor: P. Voss\nENDCONTEXT\nThe lamp flashes twice.\nENDINPUT",
        "output": f"Answer to: {CONTEXTUAL}",
    }


def test_split_context_leaves_other_instructions_whole() -> None:
    assert split_context("Explain BEGININPUT markers.") == ("Explain BEGININPUT markers.", "")
    task, context = split_context(CONTEXTUAL)
    assert format_input([({"date": "2024-03-14", "author": "P. Voss"}, "The lamp flashes twice.")], task) == CONTEXTUAL
    assert context.startswith("BEGININPUT") and context.endswith("ENDINPUT")


def test_filters_by_category_and_score(tmp_path: Path) -> None:
    root = sample(tmp_path / "run")
    out = tmp_path / "out"
    export_dataset(str(root), ["jsonl"], where=RowFilter(include={"trivia"}), to=str(out))
    assert [r["instruction"] for r in lines(out / "instructions.jsonl")] == ["Capital of Peru?", "Tallest mountain?"]
    export_dataset(str(root), ["sharegpt"], where=RowFilter(exclude={"general"}, min_score=6.5), to=str(out))
    kept = [r["conversations"][-2]["value"] for r in lines(out / "exports" / "sharegpt.jsonl")]
    assert kept == [CONTEXTUAL, "Tallest mountain?"]  # the unscored trivia row fails any min_score
    export_dataset(str(root), ["openai-chat"], where=RowFilter(min_score=5))  # into the run itself
    assert len(lines(root / "exports" / "openai-chat.jsonl")) == 3


def test_filter_mistakes_are_named(tmp_path: Path) -> None:
    root = sample(tmp_path / "run")
    with pytest.raises(ValueError, match="has no category trivai"):
        export_dataset(str(root), ["alpaca"], where=RowFilter(include={"trivai"}))
    with pytest.raises(ValueError, match="both included and excluded"):
        RowFilter(include={"trivia"}, exclude={"trivia"})
    with pytest.raises(ValueError, match="between 0 and 10"):
        RowFilter(min_score=11)
    before = (root / "instructions.jsonl").read_bytes()
    with pytest.raises(ValueError, match="--to DIR"):
        export_dataset(str(root), ["jsonl"], where=RowFilter(min_score=5))
    assert (root / "instructions.jsonl").read_bytes() == before


def test_writer_writes_the_new_formats_on_close(tmp_path: Path) -> None:
    writer = PartWriter(str(tmp_path), exports=["jsonl", "airoboros-2.0", "openai-chat"])
    writer.add([row("Name a prime.", basis(0))])
    assert [Path(p).name for p in writer.close()] == ["airoboros-2.0.jsonl", "openai-chat.jsonl"]
    assert lines(tmp_path / "exports" / "airoboros-2.0.jsonl")[0]["prompt"] == "A chat. USER: Name a prime. ASSISTANT: "


def test_hf_folder_loads_with_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no cache outside the test
    import datasets

    root = sample(tmp_path / "run")
    (root / "report").mkdir()  # what `instructflow report` leaves there (report/build.py)
    (root / "report" / "lengths.png").write_bytes(b"\x89PNG fake")
    (root / "report" / "index.html").write_text("<html></html>")
    figures = {
        "summary": {"rows": {"run abc123": 5}, "near-duplicate pairs": {"run abc123": 0}},
        "figures": [{"id": "lengths", "title": "Instruction lengths", "file": "lengths.png", "caption": "Words per row."}],
    }
    (root / "report" / "figures.json").write_text(json.dumps(figures))
    assert cli.main(["export", str(root), "--format", "hf", "--exclude-category", "general", "--license", "cc-by-4.0"]) == 0
    folder = root / "exports" / "hf"
    everything = datasets.load_dataset(str(folder), split="train")
    assert everything.num_rows == 3 and "embedding" not in everything.column_names
    assert {"id", "category", "instruction", "response", "score", "created_at"} <= set(everything.column_names)
    trivia = datasets.load_dataset(str(folder), "trivia", split="train")
    assert sorted(trivia["instruction"]) == ["Capital of Peru?", "Tallest mountain?"]
    assert pq.read_schema(folder / "data" / "trivia" / "train-00000-of-00001.parquet").field("score").metadata[b"doc"]
    card = (folder / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == "cc-by-4.0" and header["task_categories"] == ["text-generation"]
    assert [c["config_name"] for c in header["configs"]] == ["all", "contextual", "trivia"]
    assert "| `trivia` | 2 | 16.5 |" in card  # rows and mean instruction chars, computed from the rows
    assert "`gpt-test`" in card and "`abc123`" in card and "without categories general" in card
    assert "![Instruction lengths](figures/lengths.png)\n\nWords per row." in card
    assert "| near-duplicate pairs | 0 |" in card and "[figures/index.html](figures/index.html)" in card
    assert (folder / "figures" / "lengths.png").read_bytes() == b"\x89PNG fake"
    assert "7.8 (2 scored rows)" in card  # (9.0 + 6.5) / 2
    cli.main(["export", str(root), "--format", "hf", "--include-category", "general"])  # rewritten whole
    assert sorted(os.listdir(folder / "data")) == ["general"]
