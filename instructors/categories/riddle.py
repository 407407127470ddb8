"""`riddle`: one call writes several riddles with their answers and a short explanation."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import records
from instructflow.instructors.base import Instructor
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_KINDS = [
    "a rhyming 'what am I?' riddle",
    "a riddle built on a double meaning of a word",
    "a logic puzzle that can be solved in a few sentences",
    "a lateral-thinking puzzle with a surprising but fair explanation",
    "a riddle about a number or a letter",
]


class RiddleParams(CategoryParams):
    kinds: list[str] = Field(
        default_factory=lambda: list(_KINDS),
        min_length=1,
        description="riddle kinds, one drawn per call",
    )


@register
class Riddle(Instructor):
    """Riddles and puzzles as instructions; the response names the answer and says why it fits."""

    category = "riddle"
    Params = RiddleParams
    variables = frozenset({"count", "topic", "kind"})
    params: RiddleParams

    def choose(self) -> dict[str, Any]:
        return {**super().choose(), "kind": self.rng.choice(self.params.kinds)}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        return [
            self.candidate(item["RIDDLE"], item["ANSWER"], topic=values["topic"])
            for item in records(reply, ["RIDDLE", "ANSWER"])
            if "RIDDLE" in item and "ANSWER" in item
        ]
