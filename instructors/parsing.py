"""Reply-parsing helpers shared by instructors. They never raise on malformed text: they return
what they can recognise, possibly nothing."""

from __future__ import annotations

import re

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
