"""`editor`: committed `writing` rows, damaged in code, corrected by the teacher.

A second-round category (`instructors.derived`): each generating call takes one committed row of
`source_categories` (`writing` by default), damages its response with typos, grammar mistakes and
awkward style (`instructors.editing.corrupt`, seeded by the source row, so the same row always gets
the same damage), and asks the teacher for the corrected text. The correction is kept only when it
is close to the original (`min_similarity`) and closer to it than the damaged text was; otherwise
the candidate is rejected as `not_close` or `not_corrected`. The row's instruction is a request to
edit followed by the damaged text; its response is the teacher's correction.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field

from instructflow.config import DerivedParams
from instructflow.instructors.derived import DECLINED, Derived, SourceRow, declined, marked_text
from instructflow.instructors.editing import NOT_CLOSE, NOT_CORRECTED, corrupt, similarity
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_REQUESTS = [
    "Please proofread the following text and correct its spelling, grammar and awkward phrasing:",
    "Edit this text: fix the typos and the grammar, and smooth out any clumsy sentences.",
    "Correct the mistakes in the passage below and make it read well, without changing its meaning.",
    "Can you clean up this draft? Fix the spelling, grammar and style, but keep my voice.",
]


class EditorParams(DerivedParams):
    source_categories: list[str] = Field(
        default_factory=lambda: ["writing"], min_length=1,
        description="categories whose committed responses are damaged and corrected",
    )
    requests: list[str] = Field(
        default_factory=lambda: list(_REQUESTS), min_length=1,
        description="ways of asking for the correction; one is drawn per row, the damaged text follows it",
    )
    edits_per_100_words: float = Field(4.0, gt=0, le=30, description="damage done per hundred words")
    min_words: int = Field(40, ge=5, le=5000, description="source texts with fewer words are not used")
    min_similarity: float = Field(
        0.85, gt=0, le=1, description="a correction less similar to the original (rapidfuzz ratio) is rejected"
    )


@register
class Editor(Derived):
    """Damaged copies of committed writing, with the teacher's corrections checked against the original."""

    category = "editor"
    Params = EditorParams
    variables = frozenset({"text"})
    params: EditorParams

    def usable(self, row: SourceRow) -> bool:
        return len(row.response.split()) >= self.params.min_words

    def choose(self) -> dict[str, Any]:
        values = super().choose()
        source: SourceRow = values["source"]
        # Seeded by the row: a resumed run damages it and words the request the same way, so the
        # derived row keeps its id.
        damaged, kinds = corrupt(source.response, random.Random(source.id), self.params.edits_per_100_words)
        request = random.Random(f"{source.id}:request").choice(self.params.requests)
        return {**values, "text": damaged, "damage": kinds, "request": request}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        source: SourceRow = values["source"]
        damaged = values["text"]
        instruction = f"{values['request']}\n\n{damaged}"
        if declined(reply):
            return [self.reject(self.derived(source, instruction, reply.strip()), DECLINED)]
        text = marked_text(reply, "CORRECTED")
        if text is None:
            return []
        cand = self.derived(source, instruction, text)
        score = similarity(text, source.response)
        if score < self.params.min_similarity:
            return [self.reject(cand, NOT_CLOSE)]
        if score <= similarity(damaged, source.response):
            return [self.reject(cand, NOT_CORRECTED)]
        return [cand]
