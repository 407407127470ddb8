from __future__ import annotations

from instructflow.instructors.categories.coding import PLAIN_MARKER

REPLY = "Sure! Here is the code:\n```python\nprint('hi')\n```\nRun it with python3.\n"


def test_plain_tasks_end_in_the_marker_and_get_bare_code(build, recorded) -> None:
    instr = build("coding", plain_share=1.0)
    cands = instr.parse(recorded("coding"), instr.choose())
    assert cands and all(c.instruction.endswith(f"\n{PLAIN_MARKER}") for c in cands)
    assert instr.parse_response(REPLY, cands[0]) == "print('hi')"
    assert (
        instr.parse_response("```python\ndef f():\n    return 1", cands[0])
        == "def f():\n    return 1"
    )
    assert instr.parse_response("x = 1\n", cands[0]) == "x = 1"
    assert instr.parse_response("```\n```", cands[0]) is None
    prompt = instr.response_template.render(
        {**instr.common_values(), **instr.response_values(cands[0])}
    )
    assert "code only" in prompt and PLAIN_MARKER not in prompt


def test_other_tasks_keep_fences_and_prose(build, recorded) -> None:
    instr = build("coding", plain_share=0.0)
    cands = instr.parse(recorded("coding"), instr.choose())
    assert cands and not any(PLAIN_MARKER in c.instruction for c in cands)
    assert instr.parse_response(REPLY, cands[0]) == REPLY.strip()


def test_plain_share_is_roughly_honoured(build, recorded) -> None:
    instr = build("coding", seed=11, plain_share=0.3)
    flags = [
        c.meta["plain"] for _ in range(50) for c in instr.parse(recorded("coding"), instr.choose())
    ]
    assert 0.2 < sum(flags) / len(flags) < 0.4


def test_programming_languages_come_from_the_config(build) -> None:
    instr = build("coding", programming_languages=["Haskell"])
    values = instr.choose()
    assert values["programming_language"] == "Haskell"
    assert "solved in Haskell" in instr.template.render({**instr.common_values(), **values})
