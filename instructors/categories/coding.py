"""`coding`: programming tasks in the configured languages. A share of them end in PLAINFORMAT and
are answered with bare code: fences and any prose around them are stripped from the reply."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import code_only
from instructflow.instructors.base import Instructor
from instructflow.instructors.parsing import numbered_items
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

PLAIN_MARKER = "PLAINFORMAT"
_LANGUAGES = [
    "Python",
    "JavaScript",
    "TypeScript",
    "Go",
    "Rust",
    "Java",
    "C",
    "C++",
    "C#",
    "SQL",
    "Bash",
]


class CodingParams(CategoryParams):
    programming_languages: list[str] = Field(
        default_factory=lambda: list(_LANGUAGES), min_length=1, description="one drawn per call"
    )
    plain_share: float = Field(
        0.3, ge=0, le=1, description="share of tasks that get code only (PLAINFORMAT)"
    )
    min_words: int = Field(8, ge=1, le=200, description="shorter tasks are dropped")


@register
class Coding(Instructor):
    """Programming tasks, from small functions to small programs; plain tasks get code only."""

    category = "coding"
    Params = CodingParams
    variables = frozenset({"count", "topic", "programming_language"})
    response_variables = frozenset({"task", "plain"})
    params: CodingParams

    def choose(self) -> dict[str, Any]:
        language = self.rng.choice(self.params.programming_languages)
        return {**super().choose(), "programming_language": language}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        out = []
        for task in numbered_items(reply):
            if len(task.split()) < self.params.min_words:
                continue
            plain = self.rng.random() < self.params.plain_share
            instruction = f"{task}\n{PLAIN_MARKER}" if plain else task
            meta = {
                "task": task,
                "plain": plain,
                "programming_language": values["programming_language"],
            }
            out.append(self.candidate(instruction, topic=values["topic"], meta=meta))
        return out

    def response_values(self, candidate: Candidate) -> dict[str, Any]:
        return {"task": candidate.meta["task"], "plain": candidate.meta["plain"]}

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        text = code_only(reply) if candidate.meta.get("plain") else reply.strip()
        return text or None
