"""`roleplay`: one call invents a persona (written as a system prompt) and several messages a user
might send to it; each message is answered in character, with the persona as the system prompt."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import labelled_lines
from instructflow.instructors.base import Instructor
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_KINDS = [
    "a well-known figure from history, speaking as they plausibly would",
    "a stock character from a genre (a noir detective, a pirate captain, a fairy-tale witch, ...)",
    "an original character with a distinctive job and way of talking",
    "a famous fictional character who is long out of copyright",
    "a non-human narrator (an old tree, a ship's cat, a city's clock tower, ...)",
]


class RoleplayParams(CategoryParams):
    kinds: list[str] = Field(
        default_factory=lambda: list(_KINDS),
        min_length=1,
        description="persona kinds, one per call",
    )
    min_persona_words: int = Field(
        15, ge=1, le=500, description="shorter persona descriptions drop the call"
    )


@register
class Roleplay(Instructor):
    """Answers in the voice of a persona; a configured `system_prompt` is put before the persona."""

    category = "roleplay"
    Params = RoleplayParams
    variables = frozenset({"count", "topic", "kind"})
    params: RoleplayParams

    def choose(self) -> dict[str, Any]:
        return {**super().choose(), "kind": self.rng.choice(self.params.kinds)}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        fields = labelled_lines(reply, ["CHARACTER", "PERSONA", "MESSAGE"])
        persona = next((value for label, value in fields if label == "PERSONA"), "")
        if len(persona.split()) < self.params.min_persona_words:
            return []
        system = (
            f"{self.params.system_prompt}\n\n{persona}" if self.params.system_prompt else persona
        )
        messages = [value for label, value in fields if label == "MESSAGE" and value]
        return [
            self.candidate(message, topic=values["topic"], system=system) for message in messages
        ]
