import asyncio

import pytest

from instructflow.actors.core.judge import JudgeChain, RuleFilter, parse_judgement
from instructflow.config import LlmJudge, Rules
from instructflow.instructors.record import Candidate
from instructflow.instructors.teacher.api import Reply


def cand(instruction="Explain how tides work in two sentences.", response="The moon pulls the oceans."):
    return Candidate(category="general", instruction=instruction, response=response)


@pytest.mark.parametrize(
    "response,reason",
    [
        ("I'm sorry, but I cannot help with that.", "refusal"),
        ("As an AI language model, I do not have opinions.", "refusal"),
        ("I apologize for the confusion.", "refusal"),
        ("", "response_too_short"),
        ("x" * 70, "response_too_long"),
        ("Tides follow the moon.", None),
    ],
)
def test_rule_filter_reasons(response, reason):
    rules = RuleFilter(Rules(max_response_chars=60))
    assert rules.check(cand(response=response)) == reason


def test_banned_words_match_whole_words_case_insensitively_and_regexes():
    rules = RuleFilter(Rules(banned_words=["delve"], banned_regexes=[r"\bhttps?://"]))
    assert rules.check(cand(response="Let us DELVE into it.")) == "banned_word"
    assert rules.check(cand(response="Delvesford is a village.")) is None
    assert rules.check(cand(response="See http://example.org")) == "banned_regex"


def test_short_instruction_and_disabled_refusals():
    assert RuleFilter(Rules()).check(cand(instruction="Hi")) == "instruction_too_short"
    assert RuleFilter(Rules(refusals=False)).check(cand(response="I'm sorry, no.")) is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("SCORE: 8\nVERDICT: accept\nREASON: fine", (8.0, "accept")),
        ("score = 3.5\nverdict: Reject", (3.5, "reject")),
        ("SCORE: 42", (None, None)),
        ("no idea", (None, None)),
    ],
)
def test_parse_judgement(text, expected):
    assert parse_judgement(text) == expected


class ScriptedTeacher:
    """A minimal in-process Teacher returning fixed text (the judge chain's unit under test)."""

    def __init__(self, text):
        self.text, self.prompts = text, []

    async def chat(self, messages, *, category, call, max_tokens=None, temperature=None):
        self.prompts.append(messages[-1]["content"])
        return Reply(self.text, 100, 10, "m")


@pytest.mark.parametrize("reply,accepted,reason", [("SCORE: 9\nVERDICT: accept", True, None),
                                                    ("SCORE: 2\nVERDICT: reject", False, "low_score"),
                                                    ("garbage", False, "judge_unparseable")])
def test_llm_judge_records_score_and_applies_threshold(reply, accepted, reason):
    chain = JudgeChain(Rules(), LlmJudge(enabled=True, threshold=6))
    teacher = ScriptedTeacher(reply)
    c = cand()
    outcome = asyncio.run(chain.judge(c, teacher))
    assert (outcome.accepted, outcome.reason) == (accepted, reason)
    assert "Explain how tides work" in teacher.prompts[0]
    assert c.prompt_tokens == 100
    if accepted:
        assert c.score == 9 and c.verdict == "accept"


def test_rules_run_before_the_llm_is_paid_for():
    chain = JudgeChain(Rules(), LlmJudge(enabled=True))
    teacher = ScriptedTeacher("SCORE: 10")
    outcome = asyncio.run(chain.judge(cand(response="I'm sorry, I can't help with that."), teacher))
    assert outcome.reason == "refusal" and teacher.prompts == []
