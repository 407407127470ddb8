"""`wordgame`: tasks with a strict constraint on letters or words (alliteration, lipograms,
acrostics, words with a given ending, ...), answered with the instruction itself."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors.base import TaskList
from instructflow.instructors.registry import register

_GAMES = [
    "sentences or short paragraphs in which every word starts with the same letter",
    "lists of a given number of words that contain a particular sequence of letters",
    "writing without ever using one particular letter",
    "acrostic poems whose line initials spell a given word",
    "lists of words that begin or end with a given prefix or suffix",
    "sentences whose words run in alphabetical order",
    "short texts in which every word has the same number of letters or syllables",
]


class WordgameParams(CategoryParams):
    games: list[str] = Field(
        default_factory=lambda: list(_GAMES), min_length=1, description="one game drawn per call"
    )
    min_words: int = Field(6, ge=1, le=200, description="shorter tasks are dropped")


@register
class Wordgame(TaskList):
    """Constraint-following word games; the exact letters, counts or words are part of the task."""

    category = "wordgame"
    Params = WordgameParams
    variables = frozenset({"count", "topic", "game"})
    params: WordgameParams

    def choose(self) -> dict[str, Any]:
        return {**super().choose(), "game": self.rng.choice(self.params.games)}

