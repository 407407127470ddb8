from __future__ import annotations

import random

from instructflow.instructors.characters import Card
from instructflow.instructors.registry import get_instructor

WREN = Card(
    name="Wren Halloway",
    description="A ferry pilot on Lake Orrin.",
    personality="Dry and patient.",
    speech_style="Short sentences.",
    stay_in_character="Knows boats and weather, nothing of computers.",
)


def awareness(cards: list[Card] | None = None, **params):
    cls = get_instructor("awareness")
    return cls(cls.Params(count=5, **params), topics=["lakes"], rng=random.Random(0), cards=cards)


def test_without_cards_every_question_is_one_plain_row(recorded) -> None:
    instr = awareness()
    cands = instr.parse(recorded("awareness"), instr.choose())
    assert [c.instruction for c in cands][0] == "Where are you right now, physically? Like, what room are you sitting in?"
    assert len(cands) == 5 and all(c.system is None and "group" not in c.meta for c in cands)


def test_with_cards_each_question_is_also_asked_in_character(recorded, scripted, run) -> None:
    instr = awareness([WREN], system_prompt="Be brief.")
    cands = instr.parse(recorded("awareness"), instr.choose())
    assert len(cands) == 10
    for plain, staged in zip(cands[::2], cands[1::2], strict=True):
        assert plain.instruction == staged.instruction and plain.id != staged.id
        assert plain.meta["group"] == staged.meta["group"] and staged.meta["card"] == "Wren Halloway"
        assert plain.system == "Be brief." and staged.system == "Be brief.\n\n" + WREN.system_prompt()
    teacher = scripted({"respond": recorded("awareness.respond")})
    plain_row, staged_row = (run(instr.respond(c, teacher)) for c in cands[:2])
    assert plain_row.response and staged_row.response
    plain_call, staged_call = teacher.calls
    # the plain answer is asked with the guidance template; the in-character one exactly as the row holds it
    assert "Question: Where are you right now" in plain_call["messages"][-1]["content"]
    assert staged_call["messages"] == [
        {"role": "system", "content": staged_row.system},
        {"role": "user", "content": staged_row.instruction},
    ]
    assert "+" not in staged_row.template_digest and "+" in plain_row.template_digest


def test_in_character_share_picks_questions(recorded) -> None:
    none = awareness([WREN], in_character_share=0.0)
    assert len(none.parse(recorded("awareness"), none.choose())) == 5
    staged = []
    for seed in range(20):
        some = awareness([WREN], in_character_share=0.5)
        some.rng.seed(seed)
        cands = some.parse(recorded("awareness"), some.choose())
        assert [c.instruction for c in cands if "card" not in c.meta] == [c.instruction for c in none.parse(
            recorded("awareness"), none.choose())]  # every question keeps its plain row
        staged.append(sum("card" in c.meta for c in cands))
    assert 30 < sum(staged) < 70 and min(staged) < 5  # about half of 100 questions, drawn per question
