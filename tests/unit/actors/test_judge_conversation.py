"""Judging and embedding a conversation: its own judge template and teacher call (answered by the
real stub teacher), the rules and the PII scrubber over every turn, and the novelty text."""

from __future__ import annotations

import asyncio

import numpy as np

from instructflow.actors.core.judge import (
    CONVERSATION_CALL,
    JudgeChain,
    RuleFilter,
    conversation_variables,
)
from instructflow.actors.core.novelty import Gate, LocalShard, NoveltyStage
from instructflow.config import LlmJudge, Pii, Rules, TeacherConfig
from instructflow.instructors.record import Candidate, message, novelty_text
from instructflow.instructors.teacher.client import TeacherClient
from instructflow.instructors.teacher.stub import StubTeacher
from instructflow.instructors.teacher.stub.replies import ReplyWriter
from instructflow.prompts import PROMPTS_DIR

SETTING = "You are Ann, first mate of the Heron. Stay in character."


def voyage(last: str = "Two days, if the wind holds.") -> Candidate:
    turns = [
        message("system", SETTING),
        message("user", "Where are we headed, and how far is it?", "Kit"),
        message("assistant", "West, to the Azores; the charts say nine hundred miles.", "Ann"),
        message("user", "How long until we make port?", "Kit"),
        message("assistant", last, "Ann"),
    ]
    return Candidate(
        category="rp", instruction=turns[1]["content"], response=turns[2]["content"], system=SETTING, messages=turns
    )


def single() -> Candidate:
    return Candidate(category="general", instruction="Explain how tides work in two sentences.", response="The moon pulls the oceans toward it.")


def test_a_conversation_is_judged_whole_through_the_stub_teacher() -> None:
    chain = JudgeChain(Rules(), LlmJudge(enabled=True, threshold=6))
    chat, plain = voyage(), single()
    with StubTeacher(seed=5) as stub:
        config = TeacherConfig(base_url=stub.base_url, model="stub-model", api_key_env=None)

        async def go() -> list:
            client = TeacherClient(config, base_url=stub.base_url)
            try:
                return [await chain.judge(chat, client), await chain.judge(plain, client)]
            finally:
                await client.aclose()

        verdicts = asyncio.run(go())
    assert all(v.accepted for v in verdicts)
    assert chat.score == 8 and chat.verdict == "accept" and chat.prompt_tokens > 0
    assert chat.template_digest == chain.conversation_template.digest
    assert plain.template_digest == chain.template.digest != chain.conversation_template.digest
    replies = ReplyWriter(PROMPTS_DIR)
    assert replies.example_for("rp", CONVERSATION_CALL) == (PROMPTS_DIR / "judge.conversation.example.txt").read_text().strip()


def test_the_conversation_prompt_holds_every_turn_with_its_speaker() -> None:
    chain = JudgeChain(Rules(), LlmJudge(enabled=True))
    prompt = chain.conversation_template.render(conversation_variables(voyage()))
    assert SETTING in prompt and '"rp" category' in prompt
    assert "--- TURN 4: ASSISTANT (Ann) ---\nTwo days, if the wind holds." in prompt
    assert prompt.index("TURN 1: USER (Kit)") < prompt.index("TURN 2: ASSISTANT (Ann)") < prompt.index("TURN 3")


def test_rules_read_every_turn_but_refusals_only_in_the_opening() -> None:
    rules = RuleFilter(Rules(banned_words=["kraken"]))
    assert rules.check(voyage()) is None
    assert rules.check(voyage("Two days, unless the kraken wakes.")) == "banned_word"
    assert rules.check(voyage("I'm sorry, lad: two days at least.")) is None  # said in character
    chat = voyage()
    chat.response = chat.messages[2]["content"] = "I'm sorry, but I cannot help with that."
    assert rules.check(chat) == "refusal"


def test_pii_in_a_later_turn_is_masked_and_the_opening_stays_in_step() -> None:
    chain = JudgeChain(Rules(), LlmJudge(), pii=Pii(action="mask", entities=["email"]))
    chat = voyage("Two days. Write to ann.heron@example-mail.com when we land.")
    verdicts, found = chain.screen([chat])
    assert verdicts == [None] and found[0]["email"] == 1
    assert "example-mail.com" not in chat.messages[4]["content"] and "<EMAIL>" in chat.messages[4]["content"]
    assert (chat.instruction, chat.response) == (chat.messages[1]["content"], chat.messages[2]["content"])


def test_novelty_embeds_a_conversations_opening_and_a_single_rows_instruction() -> None:
    chat, plain = voyage(), single()
    assert novelty_text(plain.instruction, plain.system, plain.messages) == plain.instruction
    assert novelty_text(chat.instruction, chat.system, chat.messages) == f"{SETTING}\n\n{chat.instruction}"
    one_exchange = [message("system", SETTING), message("user", "Hi"), message("assistant", "Ahoy")]
    assert novelty_text("Hi", SETTING, one_exchange) == "Hi"  # one exchange: embedded as a single row
    seen: list[str] = []

    async def encode(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return np.eye(4, dtype=np.float32)[: len(texts)]

    stage = NoveltyStage(encode, Gate([LocalShard(4)], 0.9, 4).admit)
    out = asyncio.run(stage.process([chat, plain]))
    assert seen == [f"{SETTING}\n\n{chat.instruction}", plain.instruction]
    assert out.outputs == {"judge": [chat, plain]}
