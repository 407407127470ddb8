"""`joke`: one call writes several requests for a joke together with the jokes that answer them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import records
from instructflow.instructors.base import Instructor
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_STYLES = [
    "a pun or play on words",
    "a one-liner",
    "a question with a punchline answer",
    "a very short story with a twist at the end",
    "a knock-knock joke",
    "a gentle observational joke about everyday life",
    "a limerick",
]


class JokeParams(CategoryParams):
    styles: list[str] = Field(
        default_factory=lambda: list(_STYLES),
        min_length=1,
        description="joke styles, one drawn per call",
    )


@register
class Joke(Instructor):
    """Clean, short jokes: the instruction asks for one, the response is the joke."""

    category = "joke"
    Params = JokeParams
    variables = frozenset({"count", "topic", "style"})
    params: JokeParams

    def choose(self) -> dict[str, Any]:
        return {**super().choose(), "style": self.rng.choice(self.params.styles)}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        return [
            self.candidate(item["REQUEST"], item["JOKE"], topic=values["topic"])
            for item in records(reply, ["REQUEST", "JOKE"])
            if "REQUEST" in item and "JOKE" in item
        ]
