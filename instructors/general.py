"""`general`: one call brainstorms a list of varied tasks; each novel task is then answered."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.instructors.base import CategoryParams, Instructor
from instructflow.instructors.parsing import numbered_items
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register


class GeneralParams(CategoryParams):
    min_words: int = Field(6, ge=1, le=200, description="shorter list items are dropped")


@register
class General(Instructor):
    """Open-ended tasks of every kind (explain, rewrite, plan, compare, ...), answered one by one."""

    category = "general"
    Params = GeneralParams
    variables = frozenset({"count", "topic"})
    params: GeneralParams

    def choose(self) -> dict[str, Any]:
        return {"count": self.params.batch_size, "topic": self.topic()}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        return [
            self.candidate(item, topic=values["topic"])
            for item in numbered_items(reply)
            if len(item.split()) >= self.params.min_words
        ]
