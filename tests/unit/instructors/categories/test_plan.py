from __future__ import annotations

import pytest

from instructflow.instructors.categories.plan import check_plan

TOOLS = {"WebSearch", "QAModel", "PageReader"}
GOOD = """Plan: Find pages about the topic.
:evidence1: = WebSearch[oldest lighthouse in Ireland]
Plan: Read the first pages.
:evidence2: = PageReader[:evidence1:]
Plan: Extract the answer.
:evidence3: = QAModel[Who built it, given :evidence2: and :evidence1:?]
Answer: :evidence3:"""


def test_a_well_formed_plan_passes() -> None:
    assert check_plan(GOOD, TOOLS)
    assert check_plan(f"```\n{GOOD}\n```", TOOLS)


@pytest.mark.parametrize(
    "broken",
    [
        GOOD.replace("PageReader[:evidence1:]", "PageReader[:evidence3:]"),  # uses later evidence
        GOOD.replace("PageReader[:evidence1:]", "PageReader[:evidence2:]"),  # uses its own output
        GOOD.replace("PageReader", "Telescope"),  # a tool that was not offered
        GOOD.replace(":evidence2: =", ":evidence5: =").replace(
            "[:evidence2:", "[:evidence5:"
        ),  # numbering gap
        GOOD.replace(
            "Answer: :evidence3:", "Answer: :evidence4:"
        ),  # answer names undefined evidence
        GOOD.replace("Answer: :evidence3:", "Answer: the answer"),  # answer names no evidence
        GOOD.rsplit("\n", 1)[0],  # no answer line
        GOOD.replace("Plan: Read the first pages.\n", ""),  # a step without its Plan line
        GOOD.replace("Plan: Extract", "Then we extract"),  # stray prose
        "",
        "Answer: :evidence1:",
    ],
)
def test_malformed_plans_fail(broken: str) -> None:
    assert not check_plan(broken, TOOLS)


def test_tools_go_in_the_system_prompt_and_core_tools_are_always_offered(build, recorded) -> None:
    instr = build("plan", seed=3, system_prompt="House rules.")
    for _ in range(30):
        assert {"WebSearch", "QAModel"} <= {name for name, _ in instr.choose()["tools"]}
    values = instr.choose()
    cands = instr.parse(recorded("plan"), values)
    assert cands
    for cand in cands:
        assert cand.system.startswith("House rules.\n\n")
        assert all(f"{name}[input]" in cand.system for name, _ in values["tools"])
        assert "WebSearch" not in cand.instruction  # the instruction is the bare question
        assert instr.parse_response(recorded("plan.respond"), cand) is not None


def test_unknown_core_tool_is_a_config_error(build) -> None:
    with pytest.raises(ValueError, match="core_tools"):
        build("plan", core_tools=["Oracle"])
