"""`card`: requests to write a character card for a described concept; the response is a card with
fixed upper-case sections, and replies missing too many sections are dropped."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import labelled_lines
from instructflow.instructors.base import TaskList
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_SECTIONS = ["NAME", "APPEARANCE", "PERSONALITY", "BACKGROUND", "SPEECH", "GOALS", "SAMPLE LINES"]


class CardParams(CategoryParams):
    sections: list[str] = Field(
        default_factory=lambda: list(_SECTIONS),
        min_length=2,
        description="upper-case section labels of a card",
    )
    min_sections: float = Field(0.75, gt=0, le=1, description="share of sections a card must have")
    min_words: int = Field(6, ge=1, le=200, description="shorter requests are dropped")


@register
class Card(TaskList):
    """Character cards (name, looks, personality, history, voice, ...) for role-play and fiction."""

    category = "card"
    Params = CardParams
    response_variables = frozenset({"instruction", "sections"})
    params: CardParams

    def response_values(self, candidate: Candidate) -> dict[str, Any]:
        return {"instruction": candidate.instruction, "sections": self.params.sections}

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        wanted = {" ".join(s.upper().split()) for s in self.params.sections}
        found = {label for label, value in labelled_lines(reply, wanted) if value}
        return reply.strip() if len(found) >= self.params.min_sections * len(wanted) else None
