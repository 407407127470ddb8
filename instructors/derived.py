"""Second-round categories: the base of categories that consume committed rows of other categories.

A second-round category (`stylized_response`, `editor`) makes each of its rows from one committed row
of its `source_categories`: a re-answer in a character's voice, a correction of a corrupted text. It
runs beside the first round, not after it: the runner (`actors.core.feed`) reads the rows the writer
commits and hands them to the instructor one per generating call (`offer`), so the category starts
as soon as its sources commit their first rows. Each source row is used at most once: a derived row
carries its source's id (`Candidate.source_id`), and a resumed run skips every source a committed
derived row already used.

A category may also read rows it does not consume (`references`, e.g. the `character` rows whose
cards `stylized_response` speaks with): those reach the instructor through `refer` (`Instructor`;
first-round categories that play cards, such as `gtkm`, read them the same way).

Replies of the generating call hold the derived text between a ``LABEL:`` line and an ``END LABEL``
line, so that a reply cut off at the token limit is told from a whole one; a reply that is only the
skip marker (``SKIP``) says the teacher declined the source, and the candidate is rejected by the
instructor with a named reason (it reaches the books and the rejects log).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from instructflow.config.params import DerivedParams
from instructflow.instructors.base import Instructor
from instructflow.instructors.record import Candidate, row_id

SKIP = "SKIP"
DECLINED = "declined"  # the teacher answered with the skip marker
REJECTED = "rejected"  # `Candidate.meta` key: the instructor's own verdict on a candidate (a reason)


@dataclass(frozen=True)
class SourceRow:
    """A committed row, as a second-round category reads it."""

    id: str
    category: str
    instruction: str
    response: str
    system: str | None = None


def marked_text(reply: str, label: str) -> str | None:
    """The text between a line ``LABEL:`` (text may follow on the same line) and a line
    ``END LABEL``; None when either is missing or nothing stands between them."""
    pattern = re.compile(
        rf"^[ \t]*{re.escape(label)}[ \t]*:[ \t]*(.*?)^[ \t]*END[ \t]+{re.escape(label)}[ \t]*$",
        re.MULTILINE | re.DOTALL | re.IGNORECASE,
    )
    match = pattern.search(reply)
    text = match.group(1).strip() if match else ""
    return text or None


def declined(reply: str) -> bool:
    """True when the reply is the skip marker (alone, or followed by a short reason)."""
    first = reply.strip().splitlines()[0] if reply.strip() else ""
    return re.fullmatch(rf"{SKIP}\b.{{0,200}}", first.strip(), re.IGNORECASE | re.DOTALL) is not None \
        and len(reply.strip()) <= 300


class Derived(Instructor):
    """Base of the second-round categories. A subclass sets `category`, a `Params` deriving from
    `DerivedParams`, its template `variables`, adds its values to `choose` and writes `parse`."""

    Params: ClassVar[type[DerivedParams]] = DerivedParams
    params: DerivedParams

    def __init__(self, params: DerivedParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.hand: deque[SourceRow] = deque()  # source rows handed over, one per coming call

    @property
    def sources(self) -> tuple[str, ...]:
        """The categories whose committed rows this category consumes."""
        return tuple(dict.fromkeys(self.params.source_categories))

    def offer(self, row: SourceRow) -> None:
        """Hands over one source row for the next generating call."""
        self.hand.append(row)

    def usable(self, row: SourceRow) -> bool:
        """Whether a source row can be made into a row of this category (e.g. long enough); rows it
        cannot use are never offered."""
        return bool(row.response.strip())

    def missing(self) -> str | None:
        """Why no call can start though source rows are on hand (e.g. no character card yet); None
        when one can."""
        return None

    def choose(self) -> dict[str, Any]:
        """The next source row (under ``source``); subclasses add their template values.

        Raises:
            LookupError: no source row is on hand (the runner offers one before each call).
        """
        if not self.hand:
            raise LookupError(f"{self.category}: no source row on hand")
        return {"source": self.hand.popleft()}

    def derived(self, source: SourceRow, instruction: str, response: str, **fields: Any) -> Candidate:
        """A candidate made from `source` (its `source_id` set)."""
        return self.candidate(instruction, response, source_id=source.id, **fields)

    @staticmethod
    def reject(candidate: Candidate, reason: str) -> Candidate:
        """Marks `candidate` as rejected by this instructor for `reason`: the runner counts it as
        generated, then rejected (books, rejects log, metrics), and passes it no further."""
        candidate.meta[REJECTED] = reason
        return candidate


def load_rows(path: Path) -> tuple[list[SourceRow], list[SourceRow]]:
    """Recorded source and reference rows from a YAML file with ``sources`` and ``references`` lists
    of {category, instruction, response, system}; ids are derived as the writer's are. Used to drive
    a second-round category without a run (``prompts/<category>.sources.yaml``, the registry test)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    def rows(key: str) -> list[SourceRow]:
        out = []
        for item in data.get(key) or []:
            instruction, system = item["instruction"], item.get("system")
            out.append(SourceRow(row_id(instruction, system), item["category"], instruction, item["response"], system))
        return out

    return rows("sources"), rows("references")


def feed_recorded(instructor: Instructor, copies: int = 4) -> Instructor:
    """Feeds a second-round instructor the recorded rows beside its template
    (``prompts/<category>.sources.yaml``), each usable source `copies` times, so it can make calls
    without a run (tests, docs); other instructors come back untouched."""
    if isinstance(instructor, Derived):
        from instructflow.prompts import PROMPTS_DIR

        sources, references = load_rows(PROMPTS_DIR / f"{instructor.category}.sources.yaml")
        for row in references:
            instructor.refer(row)
        for row in [r for r in sources if instructor.usable(r)] * copies:
            instructor.offer(row)
    return instructor
