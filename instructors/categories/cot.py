"""`cot`: questions answered by weighing several candidate solutions: each solution reasoned out,
then a ranking, then a final answer. Replies missing any of those parts are dropped."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from instructflow.config import CategoryParams
from instructflow.instructors.base import TaskList
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_SOLUTION = re.compile(r"^\W*Solution\s+(\d{1,2})\s*:", re.IGNORECASE | re.MULTILINE)
_RANKING = re.compile(r"^\W*Ranking\s*:", re.IGNORECASE | re.MULTILINE)
_FINAL = re.compile(r"^\W*Final\s+Answer\s*:\W*(\w.*)", re.IGNORECASE | re.MULTILINE | re.DOTALL)


class CotParams(CategoryParams):
    solutions: int = Field(3, ge=2, le=6, description="candidate solutions asked for")
    min_solutions: int = Field(2, ge=2, le=6, description="replies with fewer are dropped")
    min_words: int = Field(8, ge=1, le=200, description="shorter questions are dropped")

    @model_validator(mode="after")
    def _reachable(self) -> CotParams:
        if self.min_solutions > self.solutions:
            raise ValueError(
                "min_solutions is larger than solutions: every answer would be dropped"
            )
        return self


@register
class Cot(TaskList):
    """Chain-of-thought with alternatives: compare several lines of reasoning, then commit."""

    category = "cot"
    Params = CotParams
    response_variables = frozenset({"instruction", "solutions"})
    params: CotParams

    def response_values(self, candidate: Candidate) -> dict[str, Any]:
        return {"instruction": candidate.instruction, "solutions": self.params.solutions}

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        text = reply.strip()
        numbers = {int(n) for n in _SOLUTION.findall(text)}
        ranking, final = _RANKING.search(text), _FINAL.search(text)
        if len(numbers) < self.params.min_solutions or not ranking or not final:
            return None
        # The parts must come in order: solutions, then the ranking, then the final answer.
        last_solution = max(m.start() for m in _SOLUTION.finditer(text))
        return text if last_solution < ranking.start() < final.start() else None
