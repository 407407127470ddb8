"""`counterfactual_contextual`: one question asked over a true passage and over a falsified copy.

The generating call writes factual passages with a question each; a second call per passage
("falsify") changes the facts the question depends on. Both halves of a pair are emitted together
from the one generating call that made them (never again: pairs already emitted are remembered),
share `meta["group"]`, and are answered strictly from their own passage, so that the data teaches
that the given context outranks what the model believes.

The two instructions differ only in the changed detail (cosine similarity ~0.98 with MiniLM), so
the novelty stage does not compare the halves of one pair (`meta["group"]`) with each other, only
with everything else: both are admitted together, the one documented exception to the novelty
threshold (README). Each half is still checked on its own against every other instruction, so a
pair can be split: one half admitted, the other rejected as a near-duplicate of an earlier row.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import format_input, labelled_lines, records
from instructflow.instructors.base import Instructor
from instructflow.instructors.record import Candidate, normalize_text, text_hash
from instructflow.instructors.registry import register
from instructflow.instructors.teacher.api import RequestFailed, Teacher


class CounterfactualParams(CategoryParams):
    batch_size: int = Field(
        3, ge=1, le=20, description="fact passages asked for in one generating call"
    )


@register
class CounterfactualContextual(Instructor):
    """Pairs of closed-context questions whose answers differ only because the passage does."""

    category = "counterfactual_contextual"
    Params = CounterfactualParams
    variables = frozenset({"count", "topic"})
    response_variables = frozenset({"instruction"})
    params: CounterfactualParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.falsify_template = self.load_template(
            f"{self.category}.falsify", frozenset({"passage", "question"})
        )
        # Pair keys already emitted by this replica (16 hex digits each: ~100 bytes a pair).
        self._emitted: set[str] = set()

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        """The true halves; their passage, source and question wait in `meta` for the falsify call."""
        out = []
        for item in records(reply, ["FACT", "SOURCE", "QUESTION"]):
            if "FACT" not in item or "QUESTION" not in item:
                continue
            meta = {
                "passage": item["FACT"],
                "question": item["QUESTION"],
                "source": item.get("SOURCE", ""),
            }
            meta["counterfactual"] = False
            meta["group"] = text_hash(f"{meta['passage']}\n{meta['question']}")
            out.append(
                self.candidate(
                    self._instruction(meta, item["FACT"]), topic=values["topic"], meta=meta
                )
            )
        return out

    def _instruction(self, meta: dict[str, Any], passage: str) -> str:
        context = {"source": meta["source"]} if meta["source"] else {}
        return format_input([(context, passage)], meta["question"])

    def parse_falsified(self, reply: str, passage: str) -> str | None:
        """The rewritten passage, or None when it is missing or unchanged."""
        text = next((value for label, value in labelled_lines(reply, ["REWRITTEN"]) if value), "")
        return text if text and normalize_text(text) != normalize_text(passage) else None

    async def generate(self, teacher: Teacher) -> list[Candidate]:
        values = self.choose()
        reply = await self.ask(
            teacher, self.template.render({**self.common_values(), **values}), "generate"
        )
        truths = [c for c in self.parse_reply(reply, values) if c.meta["group"] not in self._emitted]
        fakes = await asyncio.gather(*(self._falsify(truth, teacher) for truth in truths))
        out: list[Candidate] = []
        for truth, fake in zip(truths, fakes, strict=True):
            if fake is not None and truth.meta["group"] not in self._emitted:
                self._emitted.add(truth.meta["group"])
                out += [fake, truth]  # the counterfactual first: see the module docstring
        for cand in out:
            cand.model = reply.model
            cand.add_usage(
                reply.prompt_tokens // len(out),
                reply.completion_tokens // len(out),
                reply.tokens_estimated,
            )
        return out

    async def _falsify(self, truth: Candidate, teacher: Teacher) -> Candidate | None:
        meta = truth.meta
        prompt = self.falsify_template.render(
            {**self.common_values(), "passage": meta["passage"], "question": meta["question"]}
        )
        try:
            reply = await self.ask_continued(teacher, prompt, "falsify")
        except RequestFailed:
            return None  # this pair is lost; the others from the same call are still good
        # A rewritten passage cut at max_tokens would be a fake shorter than its truth: lost too.
        passage = None if reply.truncated else self.parse_falsified(reply.text, meta["passage"])
        if passage is None:
            return None
        fake = self.candidate(
            self._instruction(meta, passage),
            topic=truth.topic,
            meta={**meta, "counterfactual": True},
        )
        for half in (truth, fake):  # both halves carry the falsify call: its tokens and its template
            half.add_template(self.falsify_template.digest)
            half.add_usage(
                reply.prompt_tokens // 2, reply.completion_tokens // 2, reply.tokens_estimated
            )
        return fake
