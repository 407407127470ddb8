"""`experience`: a vivid setting plus a request to be guided through it; the response is a long,
immersive second-person piece. Answers far shorter than asked for are dropped."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import records, word_count
from instructflow.instructors.base import Instructor
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register


class ExperienceParams(CategoryParams):
    batch_size: int = Field(
        3, ge=1, le=100, description="settings asked for in one generating call"
    )
    min_words: int = Field(300, ge=50, le=5000, description="length asked of each response")
    min_share: float = Field(
        0.5, gt=0, le=1, description="responses under min_words x this are dropped"
    )


@register
class Experience(Instructor):
    """Guided imaginary journeys: a place or situation described, then lived through in detail."""

    category = "experience"
    Params = ExperienceParams
    variables = frozenset({"count", "topic"})
    response_variables = frozenset({"instruction", "min_words"})
    params: ExperienceParams

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        return [
            self.candidate(f"{item['SETTING']}\n\n{item['REQUEST']}", topic=values["topic"])
            for item in records(reply, ["SETTING", "REQUEST"])
            if "SETTING" in item and "REQUEST" in item
        ]

    def response_values(self, candidate: Candidate) -> dict[str, Any]:
        return {"instruction": candidate.instruction, "min_words": self.params.min_words}

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        text = reply.strip()
        return text if word_count(text) >= self.params.min_words * self.params.min_share else None
