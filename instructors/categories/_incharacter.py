"""What the in-character conversation categories (`rp`, `gtkm`) share: a cast member as the prompts
describe them, drawn from the run's cards or invented by the teacher when the run has none."""

from __future__ import annotations

import random
import re
from typing import Any

from instructflow.instructors._textparse import labelled_lines
from instructflow.instructors.characters import Card, name_key

_NAME_SPLIT = re.compile(r"\s*(?:\||—|–| - |:)\s*")


def member(card: Card) -> dict[str, str]:
    """A card as the templates and a candidate's `meta` carry it (plain strings, JSON-safe)."""
    return {
        "name": card.name,
        "description": card.description,
        "personality": card.personality,
        "speech_style": card.speech_style,
    }


def describe(person: dict[str, str]) -> str:
    """One cast member in a system prompt: the name, then what the card says about them."""
    parts = [person["description"]]
    if person.get("personality"):
        parts.append(f"Personality: {person['personality']}")
    if person.get("speech_style"):
        parts.append(f"Speech: {person['speech_style']}")
    return f"{person['name']}: " + " ".join(p.strip() for p in parts if p.strip())


def draw(cards: list[Card], size: int, rng: random.Random) -> list[dict[str, str]]:
    """`size` distinct cards (fewer when the run has fewer), in random order."""
    return [member(card) for card in rng.sample(cards, min(size, len(cards)))]


def invented(reply: str, size: int) -> list[dict[str, str]]:
    """The cast a generating reply invented: its `CHARACTER: Name | description` lines, the first
    `size` with distinct names (a line without a description, or a name used twice, is skipped)."""
    cast: list[dict[str, str]] = []
    seen: set[str] = set()
    for label, value in labelled_lines(reply, ["CHARACTER", "SCENE", "OPENING", "QUESTION"]):
        if label != "CHARACTER":
            continue
        parts = _NAME_SPLIT.split(value.strip(), maxsplit=1)
        if len(parts) != 2 or not parts[0] or len(parts[0].split()) > 4 or not parts[1].strip():
            continue
        name = " ".join(parts[0].strip("*_ ").split())
        if not name or name_key(name) in seen:
            continue
        seen.add(name_key(name))
        cast.append({"name": name, "description": parts[1].strip()})
        if len(cast) == size:
            break
    return cast


def meta_cast(meta: dict[str, Any]) -> list[dict[str, str]]:
    """The cast a candidate carries between its calls."""
    return [dict(person) for person in meta.get("cast", [])]
