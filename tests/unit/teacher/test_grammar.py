"""Structured replies: which calls carry a category's GBNF grammar, and the shapes rp/character build."""

from __future__ import annotations

import asyncio
import random

import pytest

from instructflow.instructors.categories._shapes import character_cards, rp_scenes, transcript
from instructflow.instructors.categories.rp import Rp, RpParams
from instructflow.instructors.teacher.client import TeacherClient
from instructflow.instructors.teacher.stub import StubTeacher

ASK = [{"role": "user", "content": "Write three trivia questions about tides."}]
GRAMMAR = 'root ::= "QUESTION: " [a-z ]+ "\\n"\n'


def _ask(client: TeacherClient, grammar: str | None) -> str:
    async def go() -> str:
        try:
            return (await client.chat(ASK, category="trivia", call="generate", grammar=grammar)).text
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("kind", "mode", "field", "sent", "stub_saw"),
    [
        ("openai", "auto", "grammar", 0, 0),  # an OpenAI-compatible server may reject unknown fields
        ("openai", "on", "grammar", 1, 1),
        ("openai", "on", "guided_grammar", 1, 0),  # sent, under the name the server reads
        ("embedded", "auto", "grammar", 1, 1),
        ("embedded", "off", "grammar", 0, 0),
    ],
)
def test_the_grammar_goes_where_teacher_grammar_says(
    stub: StubTeacher, make_config, kind: str, mode: str, field: str, sent: int, stub_saw: int
) -> None:
    client = TeacherClient(make_config(kind=kind, grammar=mode, grammar_field=field), base_url=stub.base_url)
    text = _ask(client, GRAMMAR)
    assert text.startswith("QUESTION:")  # the stub's reply is the same either way
    assert client.stats().grammar == sent
    assert stub.stats()["grammar_requests"] == stub_saw


def test_a_call_without_a_grammar_sends_none(stub: StubTeacher, make_config) -> None:
    client = TeacherClient(make_config(grammar="on"), base_url=stub.base_url)
    _ask(client, None)
    assert client.stats().grammar == 0 and stub.stats()["grammar_requests"] == 0


def test_character_grammar_has_every_label_once_per_card_and_different_initials() -> None:
    text = character_cards(3, random.Random(4), min_description_words=12)
    for label in ("REQUEST", "NAME", "DESCRIPTION", "PERSONALITY", "SPEECH STYLE", "STAY IN CHARACTER"):
        assert text.count(f'"{label}: "') == 3, label
    names = [line for line in text.splitlines() if line.startswith("name")]
    assert len(names) == 3 and len({line.split('"')[1] for line in names}) == 3
    assert "(\" \" word){5,15}" in text  # two sentences of six words at least: twelve description words


def test_transcript_grammar_lets_only_the_cast_speak_and_bounds_the_turns() -> None:
    text = transcript("Mira Vale", ["Tobias \"Toby\" Reed", "Amara"], 3)
    assert 'root ::= answer (user answer){2}' in text
    assert 'other ::= ("Tobias \\"Toby\\" Reed" | "Amara")' in text  # literals escaped, longest first
    assert 'user ::= "Mira Vale" ": "' in text
    assert "CHARACTER" in rp_scenes(2, 3, True, random.Random(0)) and "CHARACTER" not in rp_scenes(2, 3, False, random.Random(0))


def test_rp_asks_for_its_shapes_without_moving_its_draws() -> None:
    c, d = (Rp(RpParams(count=1), rng=random.Random(5)) for _ in range(2))
    assert "SCENE" in c.grammar("generate", c.choose())
    d.choose()
    assert c.choose() == d.choose()  # building a grammar does not draw from the category's rng
