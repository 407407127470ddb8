"""How a row's conversation is laid out in the export formats (docs/output.md, "Exports").

A row's turns are its ``messages`` column (every turn of a multi-turn row, the one exchange of a
single-turn row). The formats differ in what they can hold: OpenAI chat keeps every turn and the
speaker's name; ShareGPT keeps turns but has no name field and its trainers expect human and gpt to
alternate; the airoboros layouts hold one instruction and one response, so a conversation becomes one
record per assistant reply, its history written out as an already formatted prompt.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from instructflow.instructors.record import is_multi_turn

__all__ = ["exchanges", "flat_turns", "is_multi_turn", "labelled", "merged", "openai_name", "row_turns", "trained"]

Turn = dict[str, Any]

_OPENAI_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def row_turns(row: dict[str, Any]) -> list[Turn]:
    """The turns of an export row: its ``messages`` when the row has them, else the one exchange of
    its ``system``, ``instruction`` and ``response``."""
    if row.get("messages"):
        return [{"role": m["role"], "content": m["content"], "name": m.get("name")} for m in row["messages"]]
    turns = [{"role": "system", "content": row["system"], "name": None}] if row.get("system") else []
    turns.append({"role": "user", "content": row["instruction"], "name": None})
    turns.append({"role": "assistant", "content": row["response"], "name": None})
    return turns


def trained(turns: list[Turn]) -> list[Turn]:
    """`turns` without the user turns after the last assistant reply: nothing answers them, so a
    trainer has nothing to learn from them."""
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=len(turns) - 1)
    return turns[: last + 1]


def labelled(turns: list[Turn]) -> list[Turn]:
    """`turns` with ``"<name>: "`` written before the content of each named turn whose role has more
    than one speaker in the conversation (two characters answering as the assistant); a role with a
    single speaker keeps its text as is, since the system prompt already names it."""
    speakers: dict[str, set[str]] = {}
    for t in turns:
        if t.get("name"):
            speakers.setdefault(t["role"], set()).add(t["name"])
    return [
        {**t, "content": f"{t['name']}: {t['content']}"} if len(speakers.get(t["role"], ())) > 1 and t.get("name") else t
        for t in turns
    ]


def merged(turns: list[Turn]) -> list[Turn]:
    """Consecutive turns of one role joined into one (blank line between), so user and assistant
    alternate; the joined turn keeps a name only when every part had that same name."""
    out: list[Turn] = []
    for t in turns:
        if out and out[-1]["role"] == t["role"]:
            name = out[-1]["name"] if out[-1]["name"] == t.get("name") else None
            out[-1] = {"role": t["role"], "content": f"{out[-1]['content']}\n\n{t['content']}", "name": name}
        else:
            out.append({"role": t["role"], "content": t["content"], "name": t.get("name")})
    return out


def exchanges(turns: list[Turn]) -> Iterator[tuple[list[Turn], Turn]]:
    """Yields ``(history, reply)`` for every assistant turn of `turns`: the turns before it, and it."""
    for i, t in enumerate(turns):
        if t["role"] == "assistant":
            yield turns[:i], t


def flat_turns(turns: list[Turn]) -> list[Turn]:
    """The turns the one-response layouts flatten: labelled, then merged, so that each record's
    reply is everything the assistant side said before the user speaks again."""
    return merged(labelled(trained(turns)))


def openai_name(name: str | None) -> str | None:
    """A speaker name as OpenAI accepts it in a message's ``name`` (letters, digits, ``_`` and ``-``,
    at most 64): other characters become ``_``; None when nothing is left."""
    if not name:
        return None
    cleaned = _OPENAI_NAME.sub("_", name.strip()).strip("_")[:64]
    return cleaned or None
