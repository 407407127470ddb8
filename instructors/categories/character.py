"""`character`: the teacher invents character cards; each card is a row and, once committed, a file.

One generating call asks for `batch_size` cards, each preceded by the request someone would make for
it. A row's instruction is that request and its response the card in its labelled text form
(`Card.to_text`), so the row teaches writing a card and the committed rows are the record from which
`<output>/characters/` is written (`actors.core.cards`; the driver syncs it when a run starts and
after it drains). Names are unique: the prompt lists the names already taken (the run's cards and
the user's, `Instructor.cards`), and a card whose name matches a taken one or one this replica
already produced, ignoring case and spacing, is dropped.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field, ValidationError

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import records
from instructflow.instructors.base import Instructor
from instructflow.instructors.categories._shapes import character_cards
from instructflow.instructors.characters import LABELS, Card, split_example_lines
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_KINDS = [
    "an original person with an unusual trade and a way of talking all their own",
    "a stock figure of a genre (a hard-boiled detective, a ship's captain, a village witch, ...)",
    "a non-human character (an old house, a talking animal, a caretaker robot, ...)",
    "someone from an invented world of science fiction or fantasy",
    "an ordinary person from a particular place and time in history",
]


class CharacterParams(CategoryParams):
    batch_size: int = Field(3, ge=1, le=20, description="cards asked for in one generating call")
    kinds: list[str] = Field(
        default_factory=lambda: list(_KINDS), min_length=1, description="kinds of character, one drawn per call"
    )
    max_names_shown: int = Field(
        40, ge=0, le=1000, description="taken names listed in the prompt (a random sample when there are more)"
    )
    min_description_words: int = Field(
        12, ge=1, le=500, description="cards with a shorter description are dropped"
    )


@register
class Character(Instructor):
    """Character cards (name, description, personality, speech style, how to stay in character)."""

    category = "character"
    Params = CharacterParams
    variables = frozenset({"count", "topic", "kind", "taken_names"})
    params: CharacterParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken: dict[str, str] = {card.key: card.name for card in self.cards}  # name key -> name

    def choose(self) -> dict[str, Any]:
        names = list(self.taken.values())
        if len(names) > self.params.max_names_shown:
            names = self.rng.sample(names, self.params.max_names_shown)
        return {**super().choose(), "kind": self.rng.choice(self.params.kinds), "taken_names": ", ".join(names)}

    def grammar(self, call: str, values: dict[str, Any]) -> str | None:
        # Initials come from their own generator: whether a grammar is built must not move `rng`.
        self._initials = getattr(self, "_initials", None) or random.Random()
        return character_cards(values["count"], self._initials, self.params.min_description_words)

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        out = []
        for item in records(reply, ["REQUEST", *LABELS], first="REQUEST"):
            card = self.read_card(item)
            request = item.get("REQUEST", "")
            if card is None or not request or card.key in self.taken:
                continue
            self.taken[card.key] = card.name
            out.append(self.candidate(request, card.to_text(), topic=values["topic"], meta={"card": card.name}))
        return out

    def read_card(self, item: dict[str, str]) -> Card | None:
        """The card of one parsed record, or None when a field is missing or too thin."""
        fields: dict[str, Any] = {LABELS[k]: v for k, v in item.items() if k in LABELS}
        if "example_lines" in fields:
            fields["example_lines"] = split_example_lines(fields["example_lines"])
        try:
            card = Card.model_validate(fields)
        except ValidationError:
            return None
        return card if len(card.description.split()) >= self.params.min_description_words else None
