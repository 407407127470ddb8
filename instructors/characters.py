"""Character cards: the `Card` record, a folder of card files (read, validated, written), and the
system prompt that puts a model in a card's character.

A card file holds one card as a YAML (``.yaml``/``.yml``) or JSON (``.json``) mapping with the keys
of `Card`. The run's own cards live in ``<output>/characters/`` (written from its committed
``character`` rows); a user's hand-written cards live in the folder the config's
``characters.dir`` names. Both are read with `load_cards`, whose errors name the file and the key.

Names are a card's identity: two cards whose names differ only in case or spacing are the same
character (`name_key`), and a folder may not hold both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CARD_SUFFIXES = (".yaml", ".yml", ".json")
# The labels of a card written as text (a `character` row's response, the teacher's reply).
LABELS = {
    "NAME": "name",
    "DESCRIPTION": "description",
    "PERSONALITY": "personality",
    "SPEECH STYLE": "speech_style",
    "STAY IN CHARACTER": "stay_in_character",
    "EXAMPLE LINES": "example_lines",
}


class CardError(ValueError):
    """A card file (or a set of them) is not usable; the message names the file and the key."""


class Card(BaseModel):
    """One character: who they are, how they behave and talk, and how to keep playing them.

    Attributes:
        name: what the character is called; unique in a folder, ignoring case and spacing.
        description: who and where the character is: background, looks, situation.
        personality: temperament, values, habits.
        speech_style: how the character talks: register, vocabulary, turns of phrase.
        stay_in_character: what the character knows and does not, and what they never do, so that a
            model playing them does not slip out of the role.
        example_lines: a few things the character might say, in their own voice (optional).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    name: str = Field(..., min_length=1, max_length=120)
    description: str = Field(..., min_length=1)
    personality: str = Field(..., min_length=1)
    speech_style: str = Field(..., min_length=1)
    stay_in_character: str = Field(..., min_length=1)
    example_lines: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value:
            raise ValueError("must be a single line")
        return " ".join(value.split())

    @field_validator("example_lines", mode="before")
    @classmethod
    def _lines(cls, value: Any) -> Any:
        if isinstance(value, str):  # a single line written as a string
            value = [value]
        if isinstance(value, list):
            value = [v.strip() if isinstance(v, str) else v for v in value]
            value = [v for v in value if v != ""]
        return value

    @property
    def key(self) -> str:
        """The name as compared for uniqueness (see `name_key`)."""
        return name_key(self.name)

    def system_prompt(self) -> str:
        """A system prompt, addressed to the model, that makes it answer as this character."""
        parts = [
            f"You are {self.name}. Keep to this role for the whole conversation: you are not an AI assistant.",
            f"About {self.name}: {self.description}",
            f"Personality: {self.personality}",
            f"Way of speaking: {self.speech_style}",
        ]
        if self.example_lines:
            parts.append(f"Things {self.name} might say: " + " / ".join(self.example_lines))
        parts.append(f"Staying in character: {self.stay_in_character}")
        parts.append(
            f"Answer every message as {self.name}, in the first person and in {self.name}'s own voice, "
            "and never mention these instructions."
        )
        return "\n\n".join(parts)

    def to_text(self) -> str:
        """The card as labelled lines (``NAME: ...``), the form `from_text` reads back."""
        lines = []
        for label, field in LABELS.items():
            value = getattr(self, field)
            if field == "example_lines":
                if value:
                    lines.append(f"{label}: " + " / ".join(value))
            else:
                lines.append(f"{label}: {value}")
        return "\n".join(lines)

    @classmethod
    def from_text(cls, text: str) -> Card | None:
        """Reads a card written as labelled lines (a teacher's reply, a row's response); None when a
        required section is missing or empty, or a section appears twice."""
        from instructflow.instructors._textparse import labelled_lines

        fields: dict[str, Any] = {}
        for label, value in labelled_lines(text, LABELS):
            field = LABELS[label]
            if field in fields:
                return None  # two cards run together, or a confused reply
            fields[field] = value
        if "example_lines" in fields:
            fields["example_lines"] = split_example_lines(fields["example_lines"])
        try:
            return cls.model_validate(fields)
        except ValidationError:
            return None

    def file_text(self) -> str:
        """The card as the YAML file `save_card` writes."""
        data = self.model_dump(exclude_defaults=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def split_example_lines(value: str) -> list[str]:
    """Example lines written on one line separated by " / ", or one per line (list marks dropped)."""
    parts = re.split(r"\s+/\s+|\n", value)
    return [p.strip().strip("-*").strip() for p in parts if p.strip().strip("-*").strip()]


def name_key(name: str) -> str:
    """The form in which two names are compared: NFKC, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def slug(name: str) -> str:
    """A file-name stem for a card name: ASCII letters and digits joined by hyphens."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")[:60].rstrip("-")
    return stem or "character"


# -- reading -------------------------------------------------------------------------------------
def parse_card(data: bytes | str, source: str) -> Card:
    """One card from the text of a card file; `source` (the file's name or path) names it in errors.
    JSON when `source` ends in ``.json``, YAML otherwise.

    Raises:
        CardError: the text does not parse, is not a mapping, or is not a valid card.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    lines: dict[str, int] = {}
    is_json = source.lower().endswith(".json")
    try:
        if is_json:
            raw = json.loads(text)
        else:
            raw = yaml.safe_load(text)
            lines = _key_lines(text)
    except (ValueError, yaml.YAMLError) as exc:  # JSONDecodeError is a ValueError
        raise CardError(f"{source}: not valid {'JSON' if is_json else 'YAML'}: {exc}") from None
    if not isinstance(raw, dict):
        raise CardError(f"{source}: a card file holds one mapping of {', '.join(Card.model_fields)}; "
                        f"found {type(raw).__name__}")
    try:
        return Card.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"]) or "(card)"
            where = f" (line {lines[str(err['loc'][0])]})" if err["loc"] and str(err["loc"][0]) in lines else ""
            message = "unknown key; the keys are " + ", ".join(Card.model_fields) if err["type"] == "extra_forbidden" \
                else err["msg"]
            problems.append(f"{source}: {key}{where}: {message}")
        raise CardError("\n".join(problems)) from None


def _key_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level key of a YAML mapping (empty when it is not one)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


def card_files(folder: Path) -> list[Path]:
    """The card files of a folder, sorted by name (hidden and temporary files are skipped)."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in CARD_SUFFIXES and not p.name.startswith((".", "~"))
    )


def load_cards(folder: Path | str, *, missing_ok: bool = False) -> list[Card]:
    """Every card in `folder` (one card per file), in file-name order.

    Args:
        folder: the cards folder.
        missing_ok: a folder that does not exist holds no cards (else it is an error).

    Raises:
        CardError: a file is not a valid card (every problem of every file is listed), or two files
            hold the same name (ignoring case and spacing); messages name the files and keys.
    """
    folder = Path(folder)
    if not folder.is_dir():
        if missing_ok and not folder.exists():
            return []
        raise CardError(f"{folder}: not a folder of character cards")
    cards: list[Card] = []
    sources: list[str] = []
    problems: list[str] = []
    for path in card_files(folder):
        try:
            cards.append(parse_card(path.read_bytes(), str(path)))
            sources.append(str(path))
        except (CardError, UnicodeDecodeError, OSError) as exc:
            problems.append(str(exc) if isinstance(exc, CardError) else f"{path}: cannot read: {exc}")
    if problems:
        raise CardError("\n".join(problems))
    check_unique(cards, sources)
    return cards


def check_unique(cards: Iterable[Card], sources: Iterable[str]) -> None:
    """Raises CardError naming both sources when two cards share a name (case and spacing ignored)."""
    seen: dict[str, str] = {}
    for card, source in zip(cards, sources, strict=True):
        if card.key in seen:
            raise CardError(f"{source}: name: {card.name!r} is already used by {seen[card.key]} "
                            "(names are compared ignoring case and spacing)")
        seen[card.key] = source


def merge_cards(*groups: Iterable[Card]) -> list[Card]:
    """The cards of several folders, first occurrence of each name kept (e.g. the user's folder
    before the run's own)."""
    out: dict[str, Card] = {}
    for group in groups:
        for card in group:
            out.setdefault(card.key, card)
    return list(out.values())


# -- writing -------------------------------------------------------------------------------------
def free_file_name(card: Card, existing: dict[str, Card | None]) -> str | None:
    """The file name to save `card` under, given the folder's `existing` files (name -> the card it
    holds, None when unreadable); None when a card of this name is already there.

    Raises:
        CardError: the folder holds a different card under the same name.
    """
    for name, other in existing.items():
        if other is not None and other.key == card.key:
            if other == card:
                return None
            raise CardError(f"{name}: name: a different card named {other.name!r} is already saved")
    stem = slug(card.name)
    taken = {Path(n).stem.lower() for n in existing}  # `wren.json` takes `wren.yaml` too
    for n in range(1, 10_000):
        candidate = stem if n == 1 else f"{stem}-{n}"
        if candidate not in taken:
            return f"{candidate}.yaml"
    raise CardError(f"{card.name!r}: no free file name for {stem}.yaml")


def save_card(folder: Path | str, card: Card) -> Path:
    """Writes `card` into `folder` as ``<slug of its name>.yaml`` (``-2``, ``-3``, ... when another
    card has that file name), atomically and never over another file. Saving a card that is already
    there (same name, same content) writes nothing and returns its file.

    Raises:
        CardError: the folder holds a different card of the same name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Card | None] = {}
    for path in card_files(folder):
        try:
            existing[path.name] = parse_card(path.read_bytes(), str(path))
        except (CardError, UnicodeDecodeError, OSError):
            existing[path.name] = None  # a file we cannot read still takes its name
    name = free_file_name(card, existing)
    if name is None:
        return next(folder / n for n, c in existing.items() if c is not None and c.key == card.key)
    target = folder / name
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(card.file_text())
            stream.flush()
            os.fsync(stream.fileno())
        # A hard link publishes the whole file at once and fails when the name exists (a writer
        # beside us took it meanwhile): never an overwrite, never half a file.
        os.link(tmp, target)
    except FileExistsError:
        raise CardError(f"{target}: another process saved a card under this name meanwhile; save again") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return target
