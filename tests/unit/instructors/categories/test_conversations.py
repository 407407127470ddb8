"""`rp` and `gtkm` against the stub teacher: casts from the run's cards, the narrator, the rows'
messages, and transcripts that break format rejected with their reason in the books and the rejects
log."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from instructflow.actors.core.ledger import Accounts
from instructflow.actors.core.producer import Producer
from instructflow.actors.core.queue import BatchQueue
from instructflow.actors.core.writer import PartWriter
from instructflow.config import TeacherConfig
from instructflow.instructors import conversation as conv
from instructflow.instructors import registry
from instructflow.instructors.base import Instructor
from instructflow.instructors.characters import Card
from instructflow.instructors.conversation import NO_TRANSCRIPT
from instructflow.instructors.record import Candidate
from instructflow.instructors.teacher.client import TeacherClient
from instructflow.instructors.teacher.stub import StubTeacher

CARDS = [
    Card(name="Wren Halloway", description="An old ferry pilot on a cold northern lake.",
         personality="Dry and patient.", speech_style="Short sentences and lake words.",
         stay_in_character="Knows boats and weather, nothing of computers."),
    Card(name="Ignatius Pell", description="A retired stage magician who runs a pawnshop.",
         personality="Vain, generous, nosy.", speech_style="Grand, theatrical phrases.",
         stay_in_character="Never reveals how a trick is done."),
    Card(name="Sunniva Brask", description="A young glacier guide who photographs every crevasse.",
         personality="Bold and cheerful.", speech_style="Quick, with climbing slang.",
         stay_in_character="Knows ice and mountains; has never seen the sea."),
]
NAMES = {card.name for card in CARDS}
LABEL = re.compile(r"(?:^|\n\n)([A-Z][\w ]{0,40}?): ")


@pytest.fixture(scope="module")
def stub() -> Iterator[StubTeacher]:
    with StubTeacher(seed=5) as server:
        yield server


def make(category: str, cards: list[Card] | None = None, seed: int = 0, **params: Any) -> Instructor:
    cls = registry.get_instructor(category)
    return cls(cls.Params(count=1, **params), topics=["harbours"], rng=random.Random(seed), cards=cards)


def run(stub: StubTeacher, instr: Instructor) -> list[Candidate]:
    """One generating call and the answer calls of what it gave, through a real client of the stub."""
    config = TeacherConfig(base_url=stub.base_url, model="stub-model", api_key_env=None, max_tokens=4000)

    async def go() -> list[Candidate]:
        client = TeacherClient(config, base_url=stub.base_url)
        try:
            cands = await instr.generate(client)
            return [c for c in [await instr.respond(c, client) for c in cands] if c is not None]
        finally:
            await client.aclose()

    return asyncio.run(go())


def check_row(row: Candidate) -> list[dict[str, Any]]:
    """The invariants of a conversation row; returns its turns after the system prompt."""
    assert row.messages and row.messages[0] == {"role": "system", "content": row.system, "name": None}
    turns = row.messages[1:]
    assert [m["role"] for m in turns] == ["user", "assistant"] * (len(turns) // 2)
    assert turns[0]["content"] == row.instruction and turns[1]["content"] == row.response
    assert all(m["content"].strip() for m in turns)
    return turns


@pytest.mark.parametrize("seed", [1, 2])
def test_rp_plays_the_runs_cards_and_the_stub_speaks_with_them(stub: StubTeacher, seed: int) -> None:
    instr = make("rp", CARDS, seed, min_characters=3, max_characters=3, min_turns=3, max_turns=4)
    rows = run(stub, instr)
    assert rows
    for row in rows:
        turns = check_row(row)
        assert row.skip_prompt_formatting and row.category == "rp"
        assert 3 <= len(turns) // 2 <= row.meta["turns"] <= 4
        user = row.meta["user"]
        assert user in NAMES and all(m["name"] == user for m in turns[::2])
        for m in turns:  # every turn is labelled with a card's name, and only cards speak
            speakers = set(LABEL.findall(m["content"]))
            assert speakers and m["content"].startswith(tuple(f"{name}: " for name in speakers))
            assert speakers <= NAMES and (m["role"] == "user") == (speakers == {user}), m
        assert all(card.name in row.system and card.description in row.system for card in CARDS)
        assert f"The user plays {user}." in row.system


def test_rp_with_a_narrator(stub: StubTeacher) -> None:
    rows = run(stub, make("rp", CARDS[:2], user_plays="narrator", min_turns=3))
    assert rows
    for row in rows:
        turns = check_row(row)
        assert row.instruction.startswith("Narrator: ") and all(m["name"] == "Narrator" for m in turns[::2])
        assert {m["name"] for m in turns[1::2]} <= NAMES | {None}
        assert "The user is the narrator" in row.system


def test_rp_without_cards_invents_a_cast_per_scene(stub: StubTeacher) -> None:
    rows = run(stub, make("rp", None, 3))
    assert rows
    casts = [tuple(p["name"] for p in row.meta["cast"]) for row in rows]
    assert all(len(cast) >= 2 and not set(cast) & NAMES for cast in casts)
    for row, cast in zip(rows, casts, strict=True):
        check_row(row)
        assert row.meta["user"] == cast[0] and all(name in row.system for name in cast)


def test_gtkm_interviews_one_card_in_character(stub: StubTeacher) -> None:
    rows = run(stub, make("gtkm", CARDS[:1], batch_size=2, min_turns=4, max_turns=6))
    assert rows
    for row in rows:
        turns = check_row(row)
        assert row.system == CARDS[0].system_prompt() and not row.skip_prompt_formatting
        assert 4 <= len(turns) // 2 <= 6
        assert {m["name"] for m in turns[1::2]} == {CARDS[0].name} and {m["name"] for m in turns[::2]} == {"User"}
        assert not any(m["content"].startswith(("User:", "Interviewer:")) for m in turns)


@pytest.mark.parametrize(
    ("category", "options", "message"),
    [
        ("rp", {"min_characters": 4, "max_characters": 2}, "min_characters"),
        ("rp", {"min_turns": 9, "max_turns": 8}, "min_turns"),
        ("rp", {"max_characters": 5}, "max_characters"),
        ("rp", {"user_plays": "audience"}, "user_plays"),
        ("gtkm", {"min_turns": 13}, "min_turns"),
    ],
)
def test_options_out_of_range_are_errors_naming_the_option(category: str, options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        registry.get_instructor(category).Params(count=1, **options)


@pytest.mark.parametrize("category", ["rp", "gtkm"])
def test_a_transcript_that_breaks_format_is_rejected_with_its_reason(
    stub: StubTeacher, category: str, tmp_path
) -> None:
    """The teacher answers in prose: each candidate is rejected by the instructor stage as
    conversation_no_transcript, in the books and the rejects log (with what was wrong), and no
    request counts as failed."""
    instr = make(category, None)
    from instructflow.prompts import PROMPTS_DIR

    waiting = instr.parse((PROMPTS_DIR / f"{category}.example.txt").read_text(encoding="utf-8"), instr.choose())
    assert len(waiting) >= 2
    rejects: list[tuple[Candidate, str]] = []
    config = TeacherConfig(base_url=stub.base_url, model="stub-model", api_key_env=None, max_tokens=4000)

    async def go() -> tuple[Accounts, Producer, list[Candidate]]:
        client = TeacherClient(config, base_url=stub.base_url)
        books, judged, answers = Accounts(), BatchQueue(100), BatchQueue(100)
        await answers.put_batch(waiting)
        await answers.close("end of test")

        async def report(delta: Any) -> None:
            books.record(delta)

        producer = Producer(
            instr, client, emit_novelty=BatchQueue(100).put_batch, take_answers=answers.take,
            emit_judge=judged.put_batch, report=report, concurrency=2, log_rejects=rejects.extend,
        )
        producer.steer(0, len(waiting))  # answer these, generate nothing
        task = asyncio.create_task(producer.run())
        try:
            async with asyncio.timeout(20):
                while books.total.terminal(category) + len(judged) < len(waiting):
                    await asyncio.sleep(0.01)
        finally:
            producer.stop()
            await task
            await client.aclose()
        return books, producer, await judged.get_batch(100, 0)

    stub.set_faults(p_wrong_format=1.0)
    try:
        books, producer, judged = asyncio.run(go())
    finally:
        stub.set_faults(p_wrong_format=0.0)
    assert judged == [] and producer.failures == {}
    assert books.snapshot().rejected == {(category, f"instructor:{NO_TRANSCRIPT}"): len(waiting)}
    writer = PartWriter(str(tmp_path))
    for cand, reason in rejects:
        writer.reject(cand, reason, cand.meta.get("reject_detail"))
    writer.close()
    records = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in records] == [NO_TRANSCRIPT] * len(waiting)
    assert all("speaker" in r["detail"] and r["response"] for r in records)  # what was wrong, and the reply


def _broken(text: str, answerer: str, user: str) -> dict[str, str]:
    """The recorded transcript broken in each way that rejects it, by the reason it must get."""
    lines = text.splitlines()
    return {
        conv.NO_TRANSCRIPT: re.sub(r"^[^:\n]+: ", "", text, flags=re.MULTILINE),
        conv.UNKNOWN_SPEAKERS: text.replace(f"{answerer}:", "Stranger:"),
        conv.WRONG_VOICE: text.replace(f"{answerer}: ", f"{answerer}: As an AI language model, I must say ", 1),
        conv.TOO_SHORT: "\n".join(lines[:3]),
        conv.ALTERNATION: f"{user}: Wait, before that, something else entirely.\n{text}",
    }


@pytest.mark.parametrize(("category", "answerer", "user"), [("rp", "DeWitt", "McCready"), ("gtkm", "DiMarco", "User")])
def test_recorded_transcripts_broken_each_way_are_rejected_with_that_reason(category: str, answerer: str, user: str) -> None:
    from instructflow.instructors.teacher.stub.replies import fill_from_prompt
    from instructflow.prompts import PROMPTS_DIR

    instr = make(category, None, min_turns=3)
    read = lambda name: fill_from_prompt((PROMPTS_DIR / name).read_text(encoding="utf-8"), "")  # noqa: E731
    cand = instr.parse(read(f"{category}.example.txt"), instr.choose())[0]
    recorded = read(f"{category}.respond.example.txt")
    assert instr.parse_response(recorded, cand) and cand.messages  # whole, it reads
    for reason, text in _broken(recorded, answerer, user).items():
        with pytest.raises(conv.ConversationRejected) as info:
            instr.parse_response(text, cand)
        assert info.value.reason == reason, (reason, info.value.detail)
