"""`contextual`: closed-context question answering in the BEGININPUT/BEGININSTRUCTION format.

Each call asks for a randomised number of passages, each with a random set of metadata keys, and an
instruction block. Some instructions ask for sources (the answer must then cite them under
"Reference(s):"); some ask what the passages do not say (the answer must then say so, which the
answering prompt signals with a leading NOT IN CONTEXT line that is removed from the response).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import format_input, parse_inputs, parse_instruction
from instructflow.instructors.base import Instructor
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_KEYS = [
    "date",
    "url",
    "author",
    "title",
    "source",
    "publication",
    "journal",
    "category",
    "location",
    "participants",
]
_NOT_IN_CONTEXT = re.compile(r"^\W*NOT\s+IN\s+CONTEXT\b\W*", re.IGNORECASE)
_REFERENCE = re.compile(
    r"^\W*(?:references?|sources?)\s*(?:\(s\))?\s*:", re.IGNORECASE | re.MULTILINE
)


class ContextualParams(CategoryParams):
    # One instruction per call: the passages are long, and several questions over the same passages
    # would be near-duplicates for the novelty stage. Fixed so that quota estimates stay right.
    batch_size: int = Field(
        1, ge=1, le=1, description="instructions per generating call (always 1)"
    )
    max_blocks: int = Field(3, ge=1, le=8, description="input blocks per instruction: 1..N")
    metadata_keys: list[str] = Field(
        default_factory=lambda: list(_KEYS), min_length=1, description="metadata key pool"
    )
    max_metadata: int = Field(4, ge=0, le=12, description="metadata keys per block: 0..N")
    max_tasks: int = Field(3, ge=1, le=6, description="tasks in one instruction block: 1..N")
    source_share: float = Field(
        0.3, ge=0, le=1, description="share of instructions asking for sources"
    )
    unanswerable_share: float = Field(
        0.15, ge=0, le=1, description="share asking what the input does not say"
    )


@register
class Contextual(Instructor):
    """Answers grounded only in the given passages, with citations when asked."""

    category = "contextual"
    Params = ContextualParams
    variables = frozenset({"topic", "blocks", "tasks", "sources", "unanswerable"})
    response_variables = frozenset({"instruction"})
    params: ContextualParams

    def choose(self) -> dict[str, Any]:
        p, rng = self.params, self.rng
        keys = min(p.max_metadata, len(p.metadata_keys))
        blocks = [
            rng.sample(p.metadata_keys, rng.randint(0, keys))
            for _ in range(rng.randint(1, p.max_blocks))
        ]
        unanswerable = rng.random() < p.unanswerable_share
        return {
            "topic": self.topic(),
            "blocks": blocks,
            "tasks": 1 if unanswerable else rng.randint(1, p.max_tasks),
            "sources": not unanswerable and rng.random() < p.source_share,
            "unanswerable": unanswerable,
        }

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        blocks, instruction = parse_inputs(reply), parse_instruction(reply)
        if not blocks or not instruction:
            return []
        meta = {"sources": values["sources"], "unanswerable": values["unanswerable"]}
        return [self.candidate(format_input(blocks, instruction), topic=values["topic"], meta=meta)]

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        text = reply.strip()
        marker = _NOT_IN_CONTEXT.match(text)
        if candidate.meta.get("unanswerable"):
            if marker is None:
                return None  # answered anyway: the answer can only come from outside the passages
            return text[marker.end() :].strip() or None
        if marker or (candidate.meta.get("sources") and not _REFERENCE.search(text)):
            return None  # refused an answerable question, or left out the sources it was asked for
        return text or None
