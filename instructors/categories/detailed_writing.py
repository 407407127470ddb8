"""`detailed_writing`: long pieces written in stages. The generating call writes tasks that state a
target length; the answer is an outline ("outline"), the parts written concurrently from it
("part"), and a combining pass ("combine") that joins them into one seamless piece."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import labelled_lines, word_count
from instructflow.instructors.base import Instructor
from instructflow.instructors.parsing import numbered_items, whole_items
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register
from instructflow.instructors.render import PromptTemplate
from instructflow.instructors.teacher.api import Reply, Teacher

_NUMBER = re.compile(r"\d{1,3}(?:[,.\u202f ]\d{3})+|\d+")
_STAGES = {  # call name -> variables of prompts/detailed_writing.<call>.j2
    "outline": {"instruction", "parts"},
    "part": {"instruction", "outline", "index", "words"},
    "combine": {"instruction", "draft"},
}
_TOKENS_PER_WORD = 2.5  # generous: non-English text and markup cost more tokens per word


class DetailedWritingParams(CategoryParams):
    batch_size: int = Field(3, ge=1, le=20, description="tasks asked for in one generating call")
    lengths: list[int] = Field(
        default_factory=lambda: [1500, 2500, 4000],
        min_length=1,
        description="target words, one per call",
    )
    part_words: int = Field(500, ge=100, le=4000, description="about this many words per part")
    max_parts: int = Field(10, ge=2, le=40, description="upper bound on parts per piece")
    min_combined_share: float = Field(
        0.6, gt=0, le=1, description="shorter combined texts fall back to the joined parts"
    )


@register
class DetailedWriting(Instructor):
    """Long essays, stories, guides and reports, several thousand words each."""

    category = "detailed_writing"
    Params = DetailedWritingParams
    variables = frozenset({"count", "topic", "words"})
    params: DetailedWritingParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stage_templates: dict[str, PromptTemplate] = {
            call: self.load_template(f"{self.category}.{call}", frozenset(names))
            for call, names in _STAGES.items()
        }

    def choose(self) -> dict[str, Any]:
        return {**super().choose(), "words": self.rng.choice(self.params.lengths)}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        out = []
        for item in numbered_items(reply):
            words = _stated_length(item, values["words"])
            if words is None:  # the teacher left the length out: state it ourselves
                words, item = values["words"], f"{item}\n\nLength: about {values['words']} words."
            if word_count(item) >= 8:
                out.append(self.candidate(item, topic=values["topic"], meta={"words": words}))
        return out

    def parse_outline(self, reply: str) -> list[str]:
        """The part summaries of an outline (at most `max_parts`); fewer than two means no outline."""
        parts = [value for label, value in labelled_lines(reply, ["PART"]) if value]
        return parts[: self.params.max_parts] if len(parts) >= 2 else []

    def parse_combined(self, reply: str, draft: str) -> str:
        """The combined piece, or the joined draft when the combining pass came back much shorter."""
        text = reply.strip()
        long_enough = word_count(text) >= self.params.min_combined_share * word_count(draft)
        return text if long_enough else draft

    async def respond(self, candidate: Candidate, teacher: Teacher) -> Candidate | None:
        words = int(candidate.meta.get("words", self.params.lengths[0]))
        count = min(max(round(words / self.params.part_words), 2), self.params.max_parts)
        reply = await self._call(teacher, candidate, "outline", {"parts": count})
        # An outline cut at max_tokens keeps its whole parts (still at least two).
        parts = whole_items(self.parse_outline, reply.text) if reply.truncated else self.parse_outline(reply.text)
        if len(parts) < 2:
            return None
        outline = "\n".join(f"PART {i}: {part}" for i, part in enumerate(parts, 1))
        each = words // len(parts)
        # Parts are written concurrently from the shared outline; the combining pass joins them.
        jobs = [
            self._call(
                teacher, candidate, "part", {"outline": outline, "index": i, "words": each}, each
            )
            for i in range(1, len(parts) + 1)
        ]
        replies = await asyncio.gather(*jobs)
        texts = [r.text.strip() for r in replies]
        if not all(texts):
            return None
        draft = "\n\n".join(texts)
        reply = await self._call(teacher, candidate, "combine", {"draft": draft}, words)
        candidate.response = self.parse_combined(reply.text, draft)
        candidate.model = reply.model
        return candidate

    async def _call(
        self,
        teacher: Teacher,
        cand: Candidate,
        call: str,
        values: dict[str, Any],
        words: int | None = None,
    ) -> Reply:
        """One stage's call (template `<category>.<call>.j2`); `words` sizes max_tokens so that long
        texts are not cut off. A part or the combined piece cut anyway is continued or rejected
        (`ask_answer`); a cut outline is returned as it is."""
        template = self.stage_templates[call]
        prompt = template.render(
            {**self.common_values(), "instruction": cand.instruction, **values}
        )
        cand.add_template(template.digest)
        if call == "outline":
            reply = await self.ask(teacher, prompt, call, self.system)
            cand.add_usage(reply.prompt_tokens, reply.completion_tokens, reply.tokens_estimated)
            return reply
        cap = int(words * _TOKENS_PER_WORD) + 256 if words else None
        return await self.ask_answer(teacher, prompt, call, cand, self.system, max_tokens=cap)


def _stated_length(item: str, asked: int) -> int | None:
    """The target length a task states: the one asked for if present, else the first round number
    (a multiple of 50) in a plausible range, so that a year in the task is not taken for a length."""
    stated = [int(re.sub(r"\D", "", n)) for n in _NUMBER.findall(item)]
    if asked in stated:
        return asked
    return next((n for n in stated if 300 <= n <= 50_000 and n % 50 == 0), None)
