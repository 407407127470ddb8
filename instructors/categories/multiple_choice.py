"""`multiple_choice`: questions with lettered options and one correct answer, some with a context
paragraph. The options are reshuffled here so that the correct letter is spread evenly over the
positions; an item whose answer is not among its options is dropped."""

from __future__ import annotations

import string
from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import records
from instructflow.instructors.base import Instructor
from instructflow.instructors.record import Candidate, normalize_text
from instructflow.instructors.registry import register

_LETTERS = string.ascii_uppercase[:8]


class MultipleChoiceParams(CategoryParams):
    options: int = Field(4, ge=2, le=8, description="options per question")
    context_share: float = Field(
        0.25, ge=0, le=1, description="share of questions with a context paragraph"
    )


@register
class MultipleChoice(Instructor):
    """Single-answer multiple-choice questions; the response is the correct letter and option."""

    category = "multiple_choice"
    Params = MultipleChoiceParams
    variables = frozenset({"count", "topic", "options", "with_context"})
    params: MultipleChoiceParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._decks: dict[
            int, list[int]
        ] = {}  # per option count: correct positions still to hand out

    def choose(self) -> dict[str, Any]:
        count = self.params.batch_size
        with_context = sum(self.rng.random() < self.params.context_share for _ in range(count))
        return {
            "count": count,
            "topic": self.topic(),
            "options": self.params.options,
            "with_context": with_context,
        }

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        out = []
        for item in records(reply, ["CONTEXT", "QUESTION", *_LETTERS, "ANSWER"], first="CONTEXT"):
            options = [item[letter] for letter in _LETTERS if letter in item]
            correct = self._answer_index(item.get("ANSWER", ""), options)
            if "QUESTION" not in item or len(options) < 2 or correct is None:
                continue
            if len({normalize_text(o) for o in options}) < len(options):
                continue  # two options alike: the question is ambiguous
            options, letter = self._place(options, correct)
            lines = [item["CONTEXT"], ""] if "CONTEXT" in item else []
            lines += [item["QUESTION"], "", *(f"{_LETTERS[i]}) {o}" for i, o in enumerate(options))]
            out.append(
                self.candidate(
                    "\n".join(lines),
                    f"{letter}) {options[_LETTERS.index(letter)]}",
                    topic=values["topic"],
                )
            )
        return out

    @staticmethod
    def _answer_index(answer: str, options: list[str]) -> int | None:
        """Index of the answer given as a letter ("B", "B) text") or as the option's text."""
        head = answer.strip().lstrip("(*").upper()
        if head and head[0] in _LETTERS and (len(head) == 1 or not head[1].isalpha()):
            index = _LETTERS.index(head[0])
            return index if index < len(options) else None
        wanted = normalize_text(answer)
        return next(
            (i for i, o in enumerate(options) if wanted and normalize_text(o) == wanted), None
        )

    def _place(self, options: list[str], correct: int) -> tuple[list[str], str]:
        """Shuffles the options, putting the correct one at the next position from a shuffled deck."""
        deck = self._decks.setdefault(len(options), [])
        if not deck:
            deck.extend(range(len(options)))
            self.rng.shuffle(deck)
        target = deck.pop()
        others = [o for i, o in enumerate(options) if i != correct]
        self.rng.shuffle(others)
        others.insert(target, options[correct])
        return others, _LETTERS[target]
