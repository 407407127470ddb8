"""`misconception`: questions that rest on or probe a widespread false belief, answered with the
correction. The answer call has its own prompt so that the teacher is told to check the premise."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.instructors.base import CategoryParams, Instructor
from instructflow.instructors.parsing import numbered_items
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register


class MisconceptionParams(CategoryParams):
    min_words: int = Field(5, ge=1, le=200, description="shorter questions are dropped")


@register
class Misconception(Instructor):
    """Questions built on popular myths; responses say plainly what is wrong and what is true."""

    category = "misconception"
    Params = MisconceptionParams
    variables = frozenset({"count", "topic"})
    response_variables = frozenset({"instruction"})
    params: MisconceptionParams

    def choose(self) -> dict[str, Any]:
        return {"count": self.params.batch_size, "topic": self.topic()}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        return [
            self.candidate(item, topic=values["topic"])
            for item in numbered_items(reply)
            if len(item.split()) >= self.params.min_words
        ]
