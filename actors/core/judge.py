"""The judge chain: cheap rule filters first, then PII scrubbing, then (optionally) an LLM-as-judge score.

Rules reject refusals, apologies and AI disclaimers, lengths out of range, banned words and banned
regular expressions. The PII scrubber (`instructors.pii`) masks or replaces personal data in the
instruction and response, or rejects the row (`pii:<entity>`), before any LLM judge sees it. The
LLM judge renders `prompts/<template>.j2` (for a conversation, a row of more than one exchange,
`prompts/<conversation_template>.j2` with every turn), asks the teacher for a score from 0 to 10, and
records the verdict and score on the candidate. A judge reply cut at `max_tokens` is asked again once with
twice the room; cut again, the row is rejected as `judge_truncated`, never judged on half a reply.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from instructflow.actors.core.stage import Outcome, Stage
from instructflow.config import LlmJudge, Pii, Rules
from instructflow.instructors.pii import Scrubber, count
from instructflow.instructors.record import Candidate, conversation
from instructflow.instructors.render import load_template
from instructflow.instructors.teacher.api import (
    FatalTeacherError,
    Teacher,
    TeacherError,
    TeacherStats,
)

# Openings and phrases that mark a reply the teacher declined or hedged instead of answering.
REFUSAL_PATTERNS = [
    r"\bas an ai\b",
    r"\bas a(n)? (large )?language model\b",
    r"\bi(?:'m| am) (?:sorry|afraid)\b",
    r"\bi (?:cannot|can't|can not|won't|will not|am unable to|'m unable to) (?:help|assist|comply|provide|fulfil|fulfill|answer|do that)\b",
    r"\bi apologi[sz]e\b",
    r"\bmy apologies\b",
    r"\bi do not have (?:personal|the ability|access)\b",
    r"\bopenai\b",
    r"\bmy (?:knowledge )?cut-?off\b",
]
JUDGE_TRUNCATED = "judge_truncated"  # the judge's reply stopped at max_tokens, even with twice the room
_SCORE = re.compile(r"\bSCORE\s*[:=]\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_VERDICT = re.compile(r"\bVERDICT\s*[:=]\s*([A-Za-z_]+)", re.IGNORECASE)


CONVERSATION_CALL = "judge_conversation"  # the teacher call that judges a whole conversation


def _texts(cand: Candidate) -> list[str]:
    """What the rules and the scrubber read: instruction and response, or every turn of a conversation."""
    if cand.is_conversation and cand.messages is not None:
        return [m["content"] for m in cand.messages]
    return [cand.instruction, cand.response or ""]


def _set_texts(cand: Candidate, texts: list[str]) -> None:
    """Puts scrubbed `_texts` back; a conversation's instruction and response stay its first user and
    first assistant turn."""
    if cand.is_conversation and cand.messages is not None:
        cand.messages = [{**m, "content": t} for m, t in zip(cand.messages, texts, strict=True)]
        cand.instruction = next((m["content"] for m in cand.messages if m["role"] == "user"), cand.instruction)
        cand.response = next((m["content"] for m in cand.messages if m["role"] == "assistant"), cand.response)
        return
    cand.instruction = texts[0]
    if cand.response is not None:
        cand.response = texts[1]


def conversation_variables(cand: Candidate) -> dict[str, object]:
    """The conversation judge template's variables: the category, the system prompt (the system turns,
    else the row's `system`; empty when none) and the other turns, each with its speaker written as
    ``USER`` or ``ASSISTANT``, and the speaker's name in brackets when the turn has one."""
    turns = conversation(cand)
    system = "\n\n".join(t["content"] for t in turns if t["role"] == "system") or cand.system or ""
    spoken = [
        {"speaker": t["role"].upper() + (f" ({t['name']})" if t.get("name") else ""), "content": t["content"]}
        for t in turns
        if t["role"] != "system"
    ]
    return {"category": cand.category, "system": system, "turns": spoken}


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str | None = None  # why it was rejected: refusal, too_short, banned_word, low_score, ...


class RuleFilter:
    """The rule part of the chain; `check` returns the reject reason or None."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._refusal = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE) if rules.refusals else None
        words = [re.escape(w) for w in rules.banned_words if w.strip()]
        self._banned_word = re.compile(rf"\b(?:{'|'.join(words)})\b", re.IGNORECASE) if words else None
        self._banned_regexes = [re.compile(p) for p in rules.banned_regexes]

    def check(self, cand: Candidate) -> str | None:
        """The reject reason, or None. Lengths and refusals are checked on the instruction and the
        response: for a conversation, its opening exchange (a character may well say "I'm sorry"
        later on; the conversation judge weighs that). Banned words and regexes are checked on
        every turn."""
        r = self.rules
        response = cand.response or ""
        if len(cand.instruction) < r.min_instruction_chars:
            return "instruction_too_short"
        if len(cand.instruction) > r.max_instruction_chars:
            return "instruction_too_long"
        if len(response.strip()) < r.min_response_chars:
            return "response_too_short"
        if len(response) > r.max_response_chars:
            return "response_too_long"
        if self._refusal and self._refusal.search(response):
            return "refusal"
        text = "\n".join(_texts(cand))
        if self._banned_word and self._banned_word.search(text):
            return "banned_word"
        if any(p.search(text) for p in self._banned_regexes):
            return "banned_regex"
        return None


def parse_judgement(reply: str) -> tuple[float | None, str | None]:
    """(score, verdict) from a judge reply; either may be None when absent or unreadable."""
    score_match = _SCORE.search(reply)
    verdict_match = _VERDICT.search(reply)
    score = float(score_match.group(1)) if score_match else None
    if score is not None and not 0 <= score <= 10:
        score = None
    return score, (verdict_match.group(1).lower() if verdict_match else None)


class JudgeChain:
    """Rules, then PII scrubbing (when `pii` is on before commit), then the LLM judge when
    `llm.enabled`. One instance per judge actor."""

    def __init__(
        self, rules: Rules, llm: LlmJudge, prompts_dir: Path | None = None, pii: Pii | None = None
    ) -> None:
        self.rules = RuleFilter(rules)
        self.llm = llm
        self.template = self.conversation_template = None
        if llm.enabled:
            declared = frozenset({"category", "instruction", "response"})
            self.template = load_template(llm.template, declared, override=prompts_dir)
            self.conversation_template = load_template(
                llm.conversation_template, frozenset({"category", "system", "turns"}), override=prompts_dir
            )
        on = pii is not None and pii.enabled and pii.before_commit and pii.entities
        self.scrubber = Scrubber.from_config(pii) if on else None

    def screen(self, batch: Sequence[Candidate]) -> tuple[list[Verdict | None], list[Counter[str]]]:
        """The rules and the PII scrubber (CPU only, no teacher): a verdict for each candidate they
        settle (None: on to the LLM judge), and the PII found in each, per entity.

        Every candidate is scrubbed in place (a conversation: every turn), the rejected ones too, since rejects.jsonl is output
        as well: with `mask` or `replace` as configured; with `drop`, a row with PII is rejected as
        `pii:<entity>` and masked, so the log says why it went without keeping the PII.
        """
        verdicts: list[Verdict | None] = []
        for cand in batch:
            reason = self.rules.check(cand)
            verdicts.append(Verdict(False, reason) if reason else None)
        found: list[Counter[str]] = [Counter() for _ in batch]
        if self.scrubber is None:
            return verdicts, found
        texts = [_texts(cand) for cand in batch]
        findings = self.scrubber.find_many([t for own in texts for t in own])
        drop = self.scrubber.action == "drop"
        start = 0
        for i, cand in enumerate(batch):
            own = findings[start : start + len(texts[i])]
            start += len(texts[i])
            found[i] = count([f for fs in own for f in fs])
            if not found[i]:
                continue
            if drop and verdicts[i] is None:
                verdicts[i] = Verdict(False, f"pii:{next(fs for fs in own if fs)[0].entity}")
            action = "mask" if drop else None
            _set_texts(cand, [self.scrubber.apply(t, fs, action) for t, fs in zip(texts[i], own, strict=True)])
        return verdicts, found

    async def judge(self, cand: Candidate, teacher: Teacher | None) -> Verdict:
        """Fills `verdict`/`score` on the candidate and says whether it is accepted."""
        verdicts, _ = self.screen([cand])
        return verdicts[0] or await self.judge_llm(cand, teacher)

    async def judge_llm(self, cand: Candidate, teacher: Teacher | None) -> Verdict:
        """The LLM judge's part of `judge`, for a candidate the rules and the scrubber passed."""
        if self.template is None or self.conversation_template is None or teacher is None:
            return Verdict(True)  # no LLM judge: `verdict` and `score` stay null, nothing was judged
        if cand.is_conversation:
            template, call, variables = self.conversation_template, CONVERSATION_CALL, conversation_variables(cand)
        else:
            template, call = self.template, "judge"
            variables = {"category": cand.category, "instruction": cand.instruction, "response": cand.response or ""}
        cand.add_template(template.digest)
        prompt = template.render(variables)
        # A reply cut at max_tokens is never read as a verdict (a score may sit before the cut while
        # the verdict it would have led to does not): asked once more with twice the room, then the
        # row is rejected. At temperature 0 the second reply starts as the first one did.
        for max_tokens in (self.llm.max_tokens, 2 * self.llm.max_tokens):
            reply = await teacher.chat(
                [{"role": "user", "content": prompt}], category=cand.category, call=call,
                max_tokens=max_tokens, temperature=0.0,
            )
            cand.add_usage(reply.prompt_tokens, reply.completion_tokens, reply.tokens_estimated)
            if not reply.truncated:
                break
        else:
            return Verdict(False, JUDGE_TRUNCATED)
        score, verdict = parse_judgement(reply.text)
        if score is None:
            return Verdict(False, "judge_unparseable")
        cand.score, cand.verdict = score, verdict or ("accept" if score >= self.llm.threshold else "reject")
        if score < self.llm.threshold:
            return Verdict(False, "low_score")
        return Verdict(True)


@dataclass
class JudgeStats:
    teacher: TeacherStats | None  # the judge's teacher client stats, when an LLM judge runs


class JudgeStage(Stage):
    """Judges a batch (rules and PII scrubbing, then the LLM judge, concurrently) and passes the
    accepted rows to the writer (`writer`). A teacher that rejects the key turns the stage fatal: the run stops."""

    name = "judge"
    batch_size = 64

    def __init__(self, chain: JudgeChain, teacher: Teacher | None) -> None:
        self.chain = chain
        self.teacher = teacher

    async def process(self, batch: list[Candidate]) -> Outcome:
        # CPU work off the event loop, so the actor keeps answering while a batch is scrubbed.
        screened, found = await asyncio.to_thread(self.chain.screen, batch)
        verdicts = await asyncio.gather(*[self._judge(c, v) for c, v in zip(batch, screened, strict=True)])
        out = Outcome()
        for cand, verdict, pii in zip(batch, verdicts, found, strict=True):
            out.scrubbed.update({(cand.category, entity): n for entity, n in pii.items()})
            if verdict.accepted:
                out.send("writer", cand)
            else:
                out.rejected.append((cand, verdict.reason or "rejected"))
        return out

    async def _judge(self, cand: Candidate, screened: Verdict | None) -> Verdict:
        if screened is not None:
            return screened
        try:
            return await self.chain.judge_llm(cand, self.teacher)
        except FatalTeacherError as exc:
            self.fatal = str(exc)
            return Verdict(False, "teacher_fatal")
        except TeacherError as exc:
            return Verdict(False, f"judge_{getattr(exc, 'reason', 'failed')}")

    def detail(self) -> JudgeStats:
        stats = getattr(self.teacher, "stats", None)
        return JudgeStats(teacher=stats() if stats else None)
