from __future__ import annotations

import pytest


@pytest.fixture
def teacher(scripted, recorded):
    """teacher(**overrides) -> a teacher answering every stage with its recorded reply."""
    replies = {
        call: recorded(f"detailed_writing.{call}") for call in ("outline", "part", "combine")
    }
    return lambda **overrides: scripted({**replies, **overrides})


def test_stated_length_is_kept_and_a_missing_one_is_added(build) -> None:
    instr = build("detailed_writing", lengths=[3000])
    reply = "1. Write a 1,800-word essay on tides for school pupils.\n2. Write a story about a ferry in 1912, rich in detail and dialogue."
    first, second = instr.parse(reply, instr.choose())
    assert first.meta["words"] == 1800 and first.instruction.endswith("pupils.")
    assert second.meta["words"] == 3000 and second.instruction.endswith("Length: about 3000 words.")


def test_outline_then_concurrent_parts_then_combine(build, recorded, run, teacher) -> None:
    instr = build("detailed_writing", part_words=500)
    (cand, *_) = instr.parse(recorded("detailed_writing"), instr.choose())
    assert cand.meta["words"] == 2500
    scripted = teacher()
    result = run(instr.respond(cand, scripted))
    assert [c["call"] for c in scripted.calls] == [
        "outline",
        "part",
        "part",
        "part",
        "part",
        "combine",
    ]
    assert "outline of 5 parts" in scripted.calls[0]["messages"][-1]["content"]  # 2500 / 500
    assert "Write PART 3 only, about 625 words" in scripted.calls[3]["messages"][-1]["content"]
    assert scripted.calls[1]["max_tokens"] > 625 and scripted.calls[-1]["max_tokens"] > 2500
    assert result.response == recorded("detailed_writing.combine").strip()
    assert result.prompt_tokens == 6 * 10


def test_a_short_combining_pass_falls_back_to_the_parts(build, recorded, run, teacher) -> None:
    instr = build("detailed_writing")
    (cand, *_) = instr.parse(recorded("detailed_writing"), instr.choose())
    result = run(instr.respond(cand, teacher(combine="In short: lighthouses helped.")))
    part = recorded("detailed_writing.part").strip()
    assert result.response == "\n\n".join([part] * 4)


def test_no_outline_or_an_empty_part_drops_the_candidate(build, recorded, run, teacher) -> None:
    instr = build("detailed_writing")
    (cand, *_) = instr.parse(recorded("detailed_writing"), instr.choose())
    assert run(instr.respond(cand, teacher(outline="Here is my plan: write well."))) is None
    assert run(instr.respond(cand, teacher(part="   "))) is None
