"""`trivia`: one call returns several question/answer pairs; no second call is needed."""

from __future__ import annotations

from typing import Any

from instructflow.config import CategoryParams
from instructflow.instructors.base import Instructor
from instructflow.instructors.parsing import labeled_pairs
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register


@register
class Trivia(Instructor):
    """Short factual questions with short, correct answers."""

    category = "trivia"
    Params = CategoryParams
    variables = frozenset({"count", "topic"})

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        return [
            self.candidate(question, answer, topic=values["topic"])
            for question, answer in labeled_pairs(reply, "QUESTION", "ANSWER")
        ]
