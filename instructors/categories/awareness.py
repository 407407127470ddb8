"""`awareness`: questions about the assistant's place, time, senses and self, answered plainly and in
character.

One generating call asks for `batch_size` questions about one aspect (where the assistant is, what
time it is, what it can sense, ...). Each question becomes a plain row: answered as the assistant
really is (no body, no senses, no clock; `prompts/awareness.response.j2`), with the category's
system prompt. When the run has character cards (`Instructor.cards`: the user's `characters.dir`, the
run's `<output>/characters/`, and the cards of `character` rows committed while it runs), a share of the questions (`in_character_share`) also becomes an
in-character row: the same question with a drawn card's system prompt (`Card.system_prompt`),
answered by the teacher under that system prompt, so the row holds exactly what produced it. The two
rows of a question share `meta["group"]`: the novelty stage does not compare them with each other
(their instructions are identical), only with everything else, and both count toward the target.
Without cards every row is plain.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors.base import TaskList
from instructflow.instructors.record import Candidate, text_hash
from instructflow.instructors.registry import register
from instructflow.instructors.teacher.api import Teacher

_ASPECTS = [
    "where the assistant is: its location, its surroundings, what is around it",
    "the time where the assistant is: the hour, the date, the day of the week, the season",
    "what the assistant can sense right now: what it sees, hears, smells, tastes or feels",
    "the assistant's body and state: whether it has one, whether it is tired, hungry or comfortable",
    "the world just outside the assistant: the weather, the noise, what is happening nearby today",
]


class AwarenessParams(CategoryParams):
    references: ClassVar[tuple[str, ...]] = ("character",)  # cards committed during the run are played too

    aspects: list[str] = Field(
        default_factory=lambda: list(_ASPECTS), min_length=1, description="what the questions are about, one per call"
    )
    in_character_share: float = Field(
        1.0, ge=0, le=1,
        description="share of questions that also get an in-character row (needs cards; none without)",
    )
    min_words: int = Field(4, ge=1, le=200, description="shorter questions are dropped")


@register
class Awareness(TaskList):
    """Questions about the assistant's location, time and self, answered plainly and in character."""

    category = "awareness"
    Params = AwarenessParams
    variables = frozenset({"count", "topic", "aspect"})
    response_variables = frozenset({"instruction"})
    params: AwarenessParams

    def choose(self) -> dict[str, Any]:
        return {**super().choose(), "aspect": self.rng.choice(self.params.aspects)}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        out = []
        for question in self.list_items(reply):
            plain = self.candidate(question, topic=values["topic"])
            out.append(plain)
            if self.cards and self.rng.random() < self.params.in_character_share:
                card = self.rng.choice(self.cards)
                prompt = card.system_prompt()
                system = f"{self.params.system_prompt}\n\n{prompt}" if self.params.system_prompt else prompt
                group = text_hash(question)
                plain.meta["group"] = group
                out.append(self.candidate(question, topic=values["topic"], system=system,
                                          meta={"group": group, "card": card.name}))
        return out

    async def respond(self, candidate: Candidate, teacher: Teacher) -> Candidate | None:
        if "card" not in candidate.meta:
            return await super().respond(candidate, teacher)
        # In character: the question as it is, under the card's system prompt, as the row holds it.
        return await self.respond_as_asked(candidate, teacher)
