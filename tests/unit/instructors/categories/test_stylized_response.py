"""`stylized_response`: a committed answer given again in a character's voice, or declined."""

from __future__ import annotations

import random

from instructflow.instructors.derived import REJECTED, load_rows
from instructflow.instructors.registry import get_instructor
from instructflow.prompts import PROMPTS_DIR

SOURCES, REFERENCES = load_rows(PROMPTS_DIR / "stylized_response.sources.yaml")


def stylized(**options):
    cls = get_instructor("stylized_response")
    instr = cls(cls.Params(count=3, **options), rng=random.Random(0))
    instr.refer(REFERENCES[0])
    instr.offer(SOURCES[0])
    return instr


def test_the_row_keeps_the_source_instruction_and_speaks_with_the_card() -> None:
    instr = stylized(system_prompt="Be kind.")
    values = instr.choose()
    prompt = instr.template.render({**instr.common_values(), **values})
    assert "Mabel Thornbury" in prompt and SOURCES[0].response in prompt
    [cand] = instr.parse("RESPONSE:\nAh, my friend, the yeast needs its time, so let it rise.\nEND RESPONSE", values)
    assert cand.instruction == SOURCES[0].instruction and cand.source_id == SOURCES[0].id
    assert cand.system.startswith("Be kind.\n\nYou are Mabel Thornbury")
    assert cand.id != SOURCES[0].id and REJECTED not in cand.meta


def test_a_skip_marker_is_a_named_rejection_and_a_long_reply_is_not_a_skip() -> None:
    instr = stylized()
    values = instr.choose()
    [cand] = instr.parse("SKIP - this is a list", values)
    assert cand.meta[REJECTED] == "declined"
    long = "SKIP " + "words " * 100
    assert instr.parse(long, values) == []  # neither a skip nor the layout: unparseable


def test_cards_are_deduplicated_and_an_unreadable_character_row_is_ignored() -> None:
    instr = stylized()
    instr.refer(REFERENCES[0])
    instr.refer(REFERENCES[0].__class__("x", "character", "Write a card.", "not a card"))
    assert [c.name for c in instr.cards] == ["Mabel Thornbury"]
