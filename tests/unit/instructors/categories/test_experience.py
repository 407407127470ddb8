from __future__ import annotations


def test_setting_and_request_form_the_instruction_and_short_answers_drop(build, recorded) -> None:
    instr = build("experience", min_words=300)
    cand = instr.parse(recorded("experience"), instr.choose())[0]
    assert cand.instruction.startswith("A lighthouse on a granite island")
    assert cand.instruction.endswith("as the keeper lights the lamp.")
    answer = recorded("experience.respond")
    assert instr.parse_response(answer, cand) == answer.strip()
    assert instr.parse_response(" ".join(answer.split()[:140]), cand) is None  # under half of 300
    prompt = instr.response_template.render(
        {**instr.common_values(), **instr.response_values(cand)}
    )
    assert "at least 300 words" in prompt
