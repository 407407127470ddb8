"""How each export format lays out a conversation row (docs/output.md, "Exports")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructflow.actors.core.export_turns import openai_name
from instructflow.cluster import cli
from instructflow.instructors.record import Candidate, message
from tests.unit.actors.runs import basis, make_run, row

SETTING = "Ann and Bo crew a ship; the user is Kit."


def voyage() -> Candidate:
    """Two characters on the assistant side (one of them answers twice running), one user, and a
    last user turn nobody answers."""
    turns = [
        message("system", SETTING),
        message("user", "Where are we?", "Kit"),
        message("assistant", "Off the Azores.", "Ann"),
        message("user", "How long to port?", "Kit"),
        message("assistant", "Two days.", "Ann"),
        message("assistant", "Three, with this wind.", "Bo O'Neil"),
        message("user", "Then we wait.", "Kit"),
    ]
    return Candidate(
        category="rp", instruction="Where are we?", response="Off the Azores.", system=SETTING,
        messages=turns, skip_prompt_formatting=True, embedding=basis(5), created_at=1_700_000_000.0,
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run", [row("Name a prime.", basis(0)), voyage()])


def test_sharegpt_keeps_every_turn_alternating_with_speakers_named(run: Path) -> None:
    cli.main(["export", str(run), "--format", "sharegpt"])
    record = lines(run / "exports" / "sharegpt.jsonl")[1]
    assert record["category"] == "rp" and record["id"] == voyage().id
    assert record["conversations"] == [
        {"from": "system", "value": SETTING},
        {"from": "human", "value": "Where are we?"},  # one user speaker: no label
        {"from": "gpt", "value": "Ann: Off the Azores."},
        {"from": "human", "value": "How long to port?"},
        {"from": "gpt", "value": "Ann: Two days.\n\nBo O'Neil: Three, with this wind."},
    ]


def test_openai_chat_keeps_each_speaker_in_name(run: Path) -> None:
    cli.main(["export", str(run), "--format", "openai-chat"])
    single, chat = lines(run / "exports" / "openai-chat.jsonl")
    assert single == {"messages": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Answer to: Name a prime."}]}
    assert [(m["role"], m.get("name")) for m in chat["messages"]] == [
        ("system", None), ("user", "Kit"), ("assistant", "Ann"), ("user", "Kit"), ("assistant", "Ann"), ("assistant", "Bo_O_Neil"),
    ]
    assert chat["messages"][-1]["content"] == "Three, with this wind."
    assert openai_name("  Dr. Zoë  ") == "Dr_Zo" and openai_name("***") is None and len(openai_name("x" * 99)) == 64


def test_airoboros_layouts_give_one_formatted_record_per_reply(run: Path) -> None:
    cli.main(["export", str(run), "--format", "jsonl", "--format", "airoboros-2.0"])
    single, first, second = lines(run / "instructions.jsonl")
    assert single["skip_prompt_formatting"] is False
    assert first == {
        "instruction": f"{SETTING}\nUSER: Where are we?\nASSISTANT: ",
        "response": "Ann: Off the Azores.", "category": "rp", "skip_prompt_formatting": True,
    }
    assert second["instruction"] == (
        f"{SETTING}\nUSER: Where are we?\nASSISTANT: Ann: Off the Azores.\nUSER: How long to port?\nASSISTANT: "
    )
    assert second["response"] == "Ann: Two days.\n\nBo O'Neil: Three, with this wind."
    pairs = lines(run / "exports" / "airoboros-2.0.jsonl")[1:]
    assert [p["prompt"] for p in pairs] == [
        f"{SETTING} USER: Where are we? ASSISTANT: ",
        f"{SETTING} USER: Where are we? ASSISTANT: Ann: Off the Azores. USER: How long to port? ASSISTANT: ",
    ]
    assert pairs[1]["completion"] == second["response"]


def test_alpaca_skips_conversations_and_the_cli_says_how_many(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", str(run), "--format", "alpaca", "--format", "sharegpt"]) == 0
    assert [r["instruction"] for r in lines(run / "exports" / "alpaca.jsonl")] == ["Name a prime."]
    printed = capsys.readouterr().out
    assert "alpaca: skipped 1 multi-turn row(s)" in printed and "sharegpt: skipped" not in printed
