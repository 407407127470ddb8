from __future__ import annotations


def test_persona_is_the_system_prompt_and_messages_are_instructions(build, recorded) -> None:
    instr = build("roleplay", system_prompt="Be kind.")
    cands = instr.parse(recorded("roleplay"), instr.choose())
    assert len(cands) == 4
    assert cands[0].instruction == "Captain, what's the worst storm you ever sailed through?"
    assert all(
        c.system.startswith("Be kind.\n\nYou are Captain Morwenna Tregarthen") for c in cands
    )
    assert len({c.id for c in cands}) == 4


def test_a_thin_persona_drops_the_call(build) -> None:
    instr = build("roleplay")
    assert (
        instr.parse("CHARACTER: Bob\nPERSONA: You are Bob.\nMESSAGE: Hi Bob!", instr.choose()) == []
    )
