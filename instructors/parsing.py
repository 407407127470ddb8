"""Reply-parsing helpers shared by instructors. They never raise on malformed text: they return
what they can recognise, possibly nothing."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

# Written after a reply's last character to see which items reach the cut (see `whole_items`).
_RUN_ON = " zqxjv"
_NUMBERED = re.compile(r"^\s*(?:\d{1,3}[.):]|[-*•]|TASK\s*\d{1,3}\s*[.:)]?)\s+(.*\S)\s*$", re.IGNORECASE)
_FENCE = re.compile(r"^```[\w+-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


def numbered_items(text: str) -> list[str]:
    """Items of a numbered or bulleted list; continuation lines are joined to their item."""
    items: list[str] = []
    for line in text.splitlines():
        match = _NUMBERED.match(line)
        if match:
            items.append(match.group(1).strip())
        elif items and line.strip() and not line.strip().endswith(":"):
            items[-1] = f"{items[-1]}\n{line.strip()}"
    return [item for item in items if item]


def labeled_pairs(text: str, first: str, second: str) -> list[tuple[str, str]]:
    """Pairs such as `QUESTION: ... ANSWER: ...`, labels matched case-insensitively at line starts."""
    pattern = re.compile(
        rf"^\s*{re.escape(first)}\s*\d*\s*[:.]\s*(.*?)\n\s*{re.escape(second)}\s*\d*\s*[:.]\s*(.*?)"
        rf"(?=\n\s*{re.escape(first)}\s*\d*\s*[:.]|\Z)",
        re.IGNORECASE | re.DOTALL | re.MULTILINE,
    )
    pairs = []
    for match in pattern.finditer(text):
        a, b = match.group(1).strip(), match.group(2).strip()
        if a and b:
            pairs.append((a, b))
    return pairs


def strip_fences(text: str) -> str:
    """Removes one surrounding Markdown code fence, if the whole text is fenced."""
    match = _FENCE.match(text.strip())
    return match.group(1) if match else text.strip()


def whole_items(
    parse: Callable[[str], list[T]],
    text: str,
    key: Callable[[T], Hashable] = lambda item: item,
    trial: Callable[[str], list[T]] | None = None,
) -> list[T]:
    """The items `parse` reads from `text`, a reply cut off at the token cap, less the one the cut went
    through.

    Which item that is depends on the format (a numbered line, a QUESTION/ANSWER record, a MESSAGE
    line, a fenced block...), and the parser already knows it: an item is partial exactly when it
    would read differently had the reply gone on. So `text` is parsed again with a few more
    characters after its end, and the items that changed (by `key`) are left out. An item that
    happens to end right at the cut is dropped too: nothing in the reply shows it is whole.

    `trial` reads the longer text (default: `parse`); a parser with state (a seeded rng, a deck of
    answer positions) passes a copy of itself here, so that both reads start alike and `parse`'s
    state ends as after one read.
    """
    unchanged = Counter(key(item) for item in (trial or parse)(text + _RUN_ON))
    items = parse(text)
    kept = []
    for item in items:
        if unchanged[key(item)] > 0:
            unchanged[key(item)] -= 1
            kept.append(item)
    return kept
