from __future__ import annotations

from collections import Counter

ITEM = """QUESTION: Which gas do plants take in for photosynthesis?
A) Oxygen
B) Carbon dioxide
C) Nitrogen
D) Helium
ANSWER: {answer}
"""


def _answer_text(cand) -> str:
    letter = cand.response.split(")")[0]
    line = next(ln for ln in cand.instruction.splitlines() if ln.startswith(f"{letter}) "))
    return line[3:]


def test_correct_letter_is_spread_evenly(build) -> None:
    instr = build("multiple_choice", seed=5)
    letters = Counter()
    for _ in range(42):
        (cand,) = instr.parse(ITEM.format(answer="B"), instr.choose())
        assert _answer_text(cand) == "Carbon dioxide" == cand.response[3:]
        letters[cand.response[0]] += 1
    assert set(letters) == set("ABCD")
    assert max(letters.values()) - min(letters.values()) <= 1, letters


def test_answer_given_as_text_or_letter_with_text(build) -> None:
    instr = build("multiple_choice")
    for answer in ["Carbon dioxide", "B) Carbon dioxide", "(B)", "b"]:
        (cand,) = instr.parse(ITEM.format(answer=answer), instr.choose())
        assert _answer_text(cand) == "Carbon dioxide", answer


def test_answer_not_among_the_options_is_dropped(build) -> None:
    instr = build("multiple_choice")
    for answer in ["E", "Argon", "", "Because of the sun"]:
        assert instr.parse(ITEM.format(answer=answer), instr.choose()) == [], answer
    twin = ITEM.replace("D) Helium", "D) oxygen").format(answer="B")
    assert instr.parse(twin, instr.choose()) == []  # two options alike


def test_context_paragraph_leads_the_instruction(build, recorded) -> None:
    instr = build("multiple_choice")
    first, second, _ = instr.parse(recorded("multiple_choice"), instr.choose())
    assert first.instruction.startswith("The Bell Rock Lighthouse stands on a reef")
    assert second.instruction.startswith("Which type of lens")
    assert sum(line[:2] in {"A)", "B)", "C)", "D)"} for line in first.instruction.splitlines()) == 4


def test_prompt_asks_for_context_on_some_questions(build) -> None:
    instr = build("multiple_choice", context_share=1.0, batch_size=3)
    values = instr.choose()
    assert values["with_context"] == 3
    assert "The first 3 question(s) must come with a short context" in instr.template.render(
        {**instr.common_values(), **values}
    )
    none = build("multiple_choice", context_share=0.0)
    assert "context paragraph" not in none.template.render(
        {**none.common_values(), **none.choose()}
    )
