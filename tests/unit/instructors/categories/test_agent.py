from __future__ import annotations

import json

import yaml


def _candidates(build, recorded, **params):
    instr = build("agent", **params)
    return instr, instr.parse(recorded("agent"), instr.choose())


def test_requests_become_instructions_and_functions_go_to_the_system_prompt(
    build, recorded
) -> None:
    instr, cands = _candidates(build, recorded)
    assert [c.instruction for c in cands][1] == "How many kilometres is 14 nautical miles?"
    for cand in cands:
        assert "- name: convert_units" in cand.system and "FUNCTIONS" not in cand.system
        assert cand.meta["functions"] == ["search_ship_log", "convert_units", "send_notice"]


def test_json_answers_are_parsed_and_unfenced(build, recorded) -> None:
    instr, cands = _candidates(build, recorded, yaml_share=0.0)
    answer = recorded("agent.respond")
    assert json.loads(instr.parse_response(answer, cands[0]))["function"] == "search_ship_log"
    fenced = instr.parse_response(f"Here you go:\n```json\n{answer}\n```\n", cands[0])
    assert json.loads(fenced) == json.loads(answer)
    assert "JSON only" in cands[0].system


def test_yaml_answers_when_yaml_is_asked(build, recorded) -> None:
    instr, cands = _candidates(build, recorded, yaml_share=1.0)
    text = "function: convert_units\nparams:\n  value: 14\n  from_unit: nautical miles\n  to_unit: km\n"
    assert yaml.safe_load(instr.parse_response(text, cands[1]))["params"]["value"] == 14
    assert "YAML only" in cands[1].system
    json_instr, json_cands = _candidates(build, recorded, yaml_share=0.0)
    assert json_instr.parse_response(text, json_cands[1]) is None  # YAML is not JSON


def test_invalid_answers_are_dropped(build, recorded) -> None:
    instr, cands = _candidates(build, recorded, yaml_share=0.0)
    for bad in [
        '{"function": "search_ship_log", "params": {"vessel_name": "Star"}',  # truncated
        '{"function": "launch_rocket", "params": {}}',  # not offered
        '{"function": "send_notice", "params": "all captains"}',  # params not a mapping
        '{"function": "send_notice", "params": {}, "reason": "x"}',  # extra key
        '["send_notice"]',
        "I would call send_notice.",
    ]:
        assert instr.parse_response(bad, cands[0]) is None, bad


def test_unusable_function_list_drops_the_call(build, recorded) -> None:
    instr = build("agent")
    broken = recorded("agent").replace("  description: Converts", "description: [Converts")
    assert instr.parse(broken, instr.choose()) == []
    assert instr.parse("REQUEST: do something", instr.choose()) == []
