from __future__ import annotations


def test_cards_need_most_of_their_sections(build, recorded) -> None:
    instr = build("card")
    cand = instr.parse(recorded("card"), instr.choose())[0]
    card = recorded("card.respond")
    assert instr.parse_response(card, cand) == card.strip()
    six = [line for line in card.splitlines() if not line.startswith("GOALS")]
    assert instr.parse_response("\n".join(six), cand)  # 6 of 7 sections: at least 0.75
    five = [line for line in six if not line.startswith("SPEECH")]
    assert instr.parse_response("\n".join(five), cand) is None  # 5 of 7: too few
    assert instr.parse_response("Elias is a kind old keeper who loves the sea.", cand) is None


def test_sections_come_from_the_config(build, recorded) -> None:
    instr = build("card", sections=["NAME", "QUIRK"], min_sections=1.0)
    cand = instr.parse(recorded("card"), instr.choose())[0]
    prompt = instr.response_template.render(
        {**instr.common_values(), **instr.response_values(cand)}
    )
    assert "NAME:\nQUIRK:" in prompt
    assert instr.parse_response("NAME: Ada\nQUIRK: hums", cand) == "NAME: Ada\nQUIRK: hums"
    assert instr.parse_response("NAME: Ada", cand) is None
