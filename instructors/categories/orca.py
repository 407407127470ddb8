"""`orca`: problems that need several steps of reasoning, answered under a system prompt (drawn
from a pool) that asks the teacher to show its reasoning step by step."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors.base import TaskList
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_SYSTEMS = [
    "You are a careful assistant. Work through the problem one step at a time, saying what you do at "
    "each step and why, and finish with a clearly marked answer.",
    "You are a patient tutor. Before answering, break the question into smaller parts, solve each in "
    "order, check the result, and then state the conclusion.",
    "You reason out loud. List what the question gives you and what it asks for, reason from one to "
    "the other in numbered steps, and end with the final answer on its own line.",
    "You are an assistant who explains as you go. Think the task through step by step, point out any "
    "assumption you make, and close with a short summary of the answer.",
]


class OrcaParams(CategoryParams):
    system_prompts: list[str] = Field(
        default_factory=lambda: list(_SYSTEMS),
        min_length=1,
        description="one drawn per instruction",
    )
    min_words: int = Field(8, ge=1, le=200, description="shorter problems are dropped")


@register
class Orca(TaskList):
    """Multi-step word problems and reasoning tasks; responses explain each step."""

    category = "orca"
    Params = OrcaParams
    params: OrcaParams

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        return [
            # A configured system_prompt wins over the pool; otherwise each row gets its own.
            self.candidate(
                item,
                topic=values["topic"],
                system=self.system or self.rng.choice(self.params.system_prompts),
            )
            for item in self.list_items(reply)
        ]
