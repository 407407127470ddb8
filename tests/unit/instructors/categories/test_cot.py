from __future__ import annotations

import pytest


def _cand(build, recorded):
    instr = build("cot")
    return instr, instr.parse(recorded("cot"), instr.choose())[0]


def test_complete_answers_are_kept(build, recorded) -> None:
    instr, cand = _cand(build, recorded)
    answer = recorded("cot.respond")
    assert instr.parse_response(answer, cand) == answer.strip()
    prompt = instr.response_template.render(
        {**instr.common_values(), **instr.response_values(cand)}
    )
    assert "3 different possible solutions" in prompt and "Final Answer:" in prompt


def test_answers_missing_a_part_or_out_of_order_are_dropped(build, recorded) -> None:
    instr, cand = _cand(build, recorded)
    answer = recorded("cot.respond")
    solutions, rest = answer.split("Ranking:")
    ranking, final = rest.split("Final Answer:")
    one_solution = answer.split("Solution 2:")[0] + "Ranking:" + rest
    for broken in [
        solutions,  # no ranking, no final answer
        solutions + "Ranking:" + ranking,  # no final answer
        solutions + "Final Answer:" + final,  # no ranking
        "Final Answer:" + final + "\n" + solutions + "Ranking:" + ranking,  # final answer first
        one_solution,  # a single solution
        answer.split("Final Answer:")[0] + "Final Answer:  \n",  # empty final answer
    ]:
        assert instr.parse_response(broken, cand) is None, broken[:80]


def test_unreachable_minimum_is_a_config_error(build) -> None:
    with pytest.raises(ValueError, match="min_solutions"):
        build("cot", solutions=2, min_solutions=3)
