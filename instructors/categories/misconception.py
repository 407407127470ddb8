"""`misconception`: questions that rest on or probe a widespread false belief, answered with the
correction. The answer call has its own prompt so that the teacher is told to check the premise."""

from __future__ import annotations

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors.base import TaskList
from instructflow.instructors.registry import register


class MisconceptionParams(CategoryParams):
    min_words: int = Field(5, ge=1, le=200, description="shorter questions are dropped")


@register
class Misconception(TaskList):
    """Questions built on popular myths; responses say plainly what is wrong and what is true."""

    category = "misconception"
    Params = MisconceptionParams
    response_variables = frozenset({"instruction"})
    params: MisconceptionParams

