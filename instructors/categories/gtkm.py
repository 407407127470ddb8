"""`gtkm` ("get to know me"): long in-character question-and-answer transcripts about one character.

The generating call takes a character (a card drawn from the run's cards, including those of
`character` rows committed while the run goes, read as `references`; while the run has none the same
call invents one, written as a card) and writes `batch_size` opening questions, each about a
different side of the character's life. Each admitted question is played out in one answer call as
an interview transcript: the user asks, the character answers in the first person, for a drawn
number of questions (`min_turns`..`max_turns`). `conversation.py` reads and cleans it; the row is a
conversation whose system prompt is the card's (`Card.system_prompt`), alternating plain user and
assistant messages. A transcript that breaks format is rejected with a named reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import labelled_lines
from instructflow.instructors.base import Instructor
from instructflow.instructors.characters import LABELS, Card
from instructflow.instructors.conversation import Cast, read_conversation, to_messages
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

USER = "User"
_USER_ALIASES = ["Interviewer", "Question", "Q", "You", "Me", "Host", "Reporter", "Visitor", "Guest"]


class GtkmParams(CategoryParams):
    references: ClassVar[tuple[str, ...]] = ("character",)  # cards committed during the run are played too

    batch_size: int = Field(3, ge=1, le=20, description="opening questions asked for in one generating call")
    min_turns: int = Field(
        6, ge=1, le=60, description="least questions a kept transcript has (fewer is rejected)"
    )
    max_turns: int = Field(12, ge=1, le=60, description="most questions asked for (more are cut)")
    min_words: int = Field(4, ge=1, le=200, description="shorter opening questions are dropped")
    max_unknown_share: float = Field(
        0.34, ge=0, le=1, description="a larger share of turns by speakers outside the cast rejects the transcript"
    )
    max_tokens: int | None = Field(
        3000, ge=1, le=65536, description="overrides teacher.max_tokens: transcripts are long"
    )

    @model_validator(mode="after")
    def _ranges(self) -> GtkmParams:
        if self.min_turns > self.max_turns:
            raise ValueError("min_turns is larger than max_turns: every transcript would be rejected")
        return self


@register
class Gtkm(Instructor):
    """Long in-character interviews: the user asks, one character answers as themselves."""

    category = "gtkm"
    Params = GtkmParams
    variables = frozenset({"count", "topic", "card"})
    response_variables = frozenset({"card", "name", "user", "question", "turns"})
    params: GtkmParams

    def choose(self) -> dict[str, Any]:
        card = self.rng.choice(self.cards) if self.cards else None  # None: invented in the call
        return {**super().choose(), "card": card.model_dump() if card else None}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        fields = labelled_lines(reply, [*LABELS, "QUESTION"])
        if values["card"]:
            card = Card.model_validate(values["card"])
        else:
            card = Card.from_text("\n".join(f"{label}: {value}" for label, value in fields if label != "QUESTION"))
        if card is None:
            return []
        system = card.system_prompt()
        if self.params.system_prompt:
            system = f"{self.params.system_prompt}\n\n{system}"
        out = []
        for label, question in fields:
            if label != "QUESTION" or len(question.split()) < self.params.min_words:
                continue
            turns = self.rng.randint(self.params.min_turns, self.params.max_turns)
            meta = {"card": card.model_dump(), "turns": turns}
            out.append(self.candidate(question, topic=values["topic"], system=system, meta=meta))
        return out

    def response_values(self, candidate: Candidate) -> dict[str, Any]:
        card = candidate.meta["card"]
        return {
            "card": Card.model_validate(card).to_text(), "name": card["name"], "user": USER,
            "question": candidate.instruction, "turns": candidate.meta["turns"],
        }

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        """Reads the transcript into the row's messages; the response is the first answer.

        Raises:
            ConversationRejected: the transcript breaks format.
        """
        if not reply.strip():  # no answer at all: dropped as no_response, like any category
            return None
        cast = Cast([candidate.meta["card"]["name"]], user=USER, aliases={USER: _USER_ALIASES})
        turns, _ = read_conversation(
            reply, cast, candidate.instruction, min_exchanges=self.params.min_turns,
            max_exchanges=int(candidate.meta["turns"]), max_unknown_share=self.params.max_unknown_share,
        )
        candidate.messages = to_messages(turns, cast, candidate.system, labelled=False)
        return next(m["content"] for m in candidate.messages if m["role"] == "assistant")
