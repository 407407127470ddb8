from __future__ import annotations

from instructflow.instructors._textparse import format_input, parse_inputs, parse_instruction


def test_choices_vary_blocks_metadata_and_kinds(build) -> None:
    instr = build(
        "contextual", seed=2, max_blocks=4, max_metadata=3, source_share=0.3, unanswerable_share=0.2
    )
    picks = [instr.choose() for _ in range(400)]
    assert {len(p["blocks"]) for p in picks} == {1, 2, 3, 4}
    assert {len(keys) for p in picks for keys in p["blocks"]} == {0, 1, 2, 3}
    unanswerable = sum(p["unanswerable"] for p in picks) / len(picks)
    sources = sum(p["sources"] for p in picks) / len(picks)
    assert 0.14 < unanswerable < 0.26 and 0.17 < sources < 0.3
    assert all(p["tasks"] == 1 and not p["sources"] for p in picks if p["unanswerable"])


def test_prompt_lays_out_one_skeleton_per_block(build) -> None:
    instr = build("contextual")
    values = {
        "topic": "tides",
        "blocks": [["date", "url"], []],
        "tasks": 2,
        "sources": True,
        "unanswerable": False,
    }
    prompt = instr.template.render({**instr.common_values(), **values})
    assert prompt.count("BEGININPUT") == 2 and prompt.count("BEGINCONTEXT") == 2
    assert "date: value\nurl: value\nENDCONTEXT" in prompt and "source(s)" in prompt


def test_blocks_round_trip_through_the_format() -> None:
    blocks = [
        ({"date": "2024-01-02", "url": "https://x.example/a"}, "First text."),
        ({}, "Second text."),
    ]
    text = format_input(blocks, "What happened?")
    assert parse_inputs(text) == blocks and parse_instruction(text) == "What happened?"
    assert text.splitlines()[:3] == ["BEGININPUT", "BEGINCONTEXT", "date: 2024-01-02"]


def test_truncated_or_broken_blocks_are_left_out() -> None:
    text = format_input([({"date": "d"}, "Kept.")], "Q?")
    assert parse_inputs(text + "\nBEGININPUT\nBEGINCONTEXT\nENDCONTEXT\nhalf a passa") == [
        ({"date": "d"}, "Kept.")
    ]
    assert parse_instruction(text.replace("ENDINSTRUCTION", "")) is None
    assert parse_inputs("BEGININPUT\nBEGINCONTEXT\nENDCONTEXT\n\nENDINPUT") == []


def _candidate(build, recorded, **meta):
    instr = build("contextual")
    (cand,) = instr.parse(recorded("contextual"), {**instr.choose(), **meta})
    return instr, cand


def test_unanswerable_questions_must_be_declined(build, recorded) -> None:
    instr, cand = _candidate(build, recorded, unanswerable=True, sources=False)
    declined = "NOT IN CONTEXT\nThe passages do not say who paid for the handrail."
    assert (
        instr.parse_response(declined, cand) == "The passages do not say who paid for the handrail."
    )
    assert instr.parse_response(recorded("contextual.respond"), cand) is None
    assert instr.parse_response("NOT IN CONTEXT", cand) is None


def test_answerable_questions_must_be_answered_with_sources_when_asked(build, recorded) -> None:
    instr, cand = _candidate(build, recorded, unanswerable=False, sources=True)
    answer = recorded("contextual.respond")
    assert instr.parse_response(answer, cand) == answer.strip()
    assert instr.parse_response(answer.split("Reference(s):")[0], cand) is None
    assert instr.parse_response("NOT IN CONTEXT\nNo idea.", cand) is None
    _, plain = _candidate(build, recorded, unanswerable=False, sources=False)
    assert instr.parse_response(answer.split("Reference(s):")[0], plain)
