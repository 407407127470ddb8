"""`writing`: creative-writing tasks, each carrying a sampled form and sampled style requirements
that the response must honour."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors.base import Instructor
from instructflow.instructors.parsing import numbered_items
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_FORMS = [
    "short story",
    "flash fiction piece under 300 words",
    "letter",
    "diary entry",
    "speech",
    "dialogue scene",
    "fable",
    "news report from an invented world",
    "monologue",
    "travel postcard",
]
_REQUIREMENTS = [
    "told in the second person",
    "written in the present tense",
    "with an unreliable narrator",
    "that ends with an unexpected twist",
    "in which no character is named",
    "that opens with a line of dialogue",
    "written as a sequence of short numbered fragments",
    "with a bittersweet ending",
    "in the style of a hard-boiled detective novel",
    "full of sensory detail about smells and sounds",
    "that uses a recurring object as a symbol",
    "told backwards, from the end to the beginning",
    "with a light, comic tone",
]


class WritingParams(CategoryParams):
    forms: list[str] = Field(
        default_factory=lambda: list(_FORMS), min_length=1, description="one form drawn per call"
    )
    requirements: list[str] = Field(
        default_factory=lambda: list(_REQUIREMENTS),
        min_length=1,
        description="style requirements to sample from",
    )
    max_requirements: int = Field(2, ge=1, le=5, description="1..N requirements drawn per call")
    min_words: int = Field(8, ge=1, le=200, description="shorter tasks are dropped")


@register
class Writing(Instructor):
    """Creative-writing prompts with explicit constraints on form and style."""

    category = "writing"
    Params = WritingParams
    variables = frozenset({"count", "topic", "form", "requirements"})
    params: WritingParams

    def choose(self) -> dict[str, Any]:
        pool = self.params.requirements
        picked = self.rng.sample(
            pool, self.rng.randint(1, min(self.params.max_requirements, len(pool)))
        )
        return {
            **super().choose(),
            "form": self.rng.choice(self.params.forms),
            "requirements": picked,
        }

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        return [
            self.candidate(item, topic=values["topic"])
            for item in numbered_items(reply)
            if len(item.split()) >= self.params.min_words
        ]
