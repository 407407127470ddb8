"""`stylized_response`: committed rows of chosen categories answered again in a character's voice.

A second-round category (`instructors.derived`): each generating call takes one committed row of
`source_categories` and one character card, and asks the teacher to answer the row's instruction as
that character, keeping what the original answer got right. The teacher declines with the skip
marker where a role-played answer would spoil the row (a joke, a list, code, a strict format); such
a candidate is rejected as `declined`, counted in the books and logged. The row keeps the source's
instruction, takes the stylized answer as its response and the card's system prompt as its system.

Cards are the run's (`Instructor.cards`: the user's `characters.dir` and `<output>/characters/`) and
the cards of `character` rows committed while the run goes (read as `references`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from instructflow.config import DerivedParams
from instructflow.instructors.characters import Card
from instructflow.instructors.derived import DECLINED, Derived, SourceRow, declined, marked_text
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_SOURCES = ["general", "experience", "trivia", "misconception", "cot"]


class StylizedResponseParams(DerivedParams):
    references: ClassVar[tuple[str, ...]] = ("character",)

    source_categories: list[str] = Field(
        default_factory=lambda: list(_SOURCES), min_length=1,
        description="categories whose committed rows are answered again in character",
    )
    min_words: int = Field(5, ge=1, le=1000, description="shorter stylized answers are dropped")


@register
class StylizedResponse(Derived):
    """Committed answers given again in a character's voice (declines counted as `declined`)."""

    category = "stylized_response"
    Params = StylizedResponseParams
    variables = frozenset({"instruction", "answer", "name", "character"})
    params: StylizedResponseParams

    def missing(self) -> str | None:
        if self.cards:
            return None
        return "no character card to speak with (add the `character` category or set characters.dir)"

    def choose(self) -> dict[str, Any]:
        values = super().choose()
        source: SourceRow = values["source"]
        card = self.rng.choice(self.cards)
        return {
            **values,
            "card": card,
            "instruction": source.instruction,
            "answer": source.response,
            "name": card.name,
            "character": card.to_text(),
        }

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        source: SourceRow = values["source"]
        card: Card = values["card"]
        prompt = card.system_prompt()
        system = f"{self.params.system_prompt}\n\n{prompt}" if self.params.system_prompt else prompt
        if declined(reply):
            return [self.reject(self.derived(source, source.instruction, reply.strip(), system=system), DECLINED)]
        text = marked_text(reply, "RESPONSE")
        if text is None or len(text.split()) < self.params.min_words:
            return []
        return [self.derived(source, source.instruction, text, system=system)]
