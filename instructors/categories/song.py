"""`song`: requests for song lyrics and poems in a sampled genre; each request is then answered."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors.base import TaskList
from instructflow.instructors.registry import register

_GENRES = [
    "folk ballad",
    "blues",
    "country",
    "hip-hop verse",
    "pop chorus-driven song",
    "sea shanty",
    "lullaby",
    "punk anthem",
    "gospel",
    "jazz standard",
    "musical-theatre number",
    "sonnet",
    "free-verse poem",
    "haiku sequence",
]


class SongParams(CategoryParams):
    genres: list[str] = Field(
        default_factory=lambda: list(_GENRES), min_length=1, description="one genre drawn per call"
    )
    min_words: int = Field(6, ge=1, le=200, description="shorter requests are dropped")


@register
class Song(TaskList):
    """Lyric and poem requests with a subject, a mood and a form; responses are the lyrics."""

    category = "song"
    Params = SongParams
    variables = frozenset({"count", "topic", "genre"})
    params: SongParams

    def choose(self) -> dict[str, Any]:
        return {**super().choose(), "genre": self.rng.choice(self.params.genres)}

