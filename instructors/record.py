"""The candidate record that flows through the pipeline, and the id and text-normalisation rules."""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalize_text(text: str) -> str:
    """Returns the form used for exact-duplicate detection: NFKC, lower case, no punctuation,
    single spaces. Two instructions that differ only in case, spacing or punctuation collide."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def text_hash(text: str) -> str:
    """16-hex-digit blake2b digest of the normalised text (the exact-duplicate key)."""
    return hashlib.blake2b(normalize_text(text).encode(), digest_size=8).hexdigest()


def row_id(instruction: str, system: str | None = None) -> str:
    """Deterministic row id: the same (system, instruction) always gets the same id, so a restarted
    run recognises rows it has already committed."""
    key = instruction if not system else f"{system}\x1f{instruction}"
    return text_hash(key)


ROLES = ("system", "user", "assistant")


def message(role: str, content: str, name: str | None = None) -> dict[str, Any]:
    """One conversation turn as stored in `Candidate.messages` and the ``messages`` column.

    Args:
        role: "system", "user" or "assistant".
        content: the turn's text.
        name: the speaker's name (a character in role play); None when the turn has no named speaker.

    Raises:
        ValueError: `role` is not one of `ROLES`.
    """
    if role not in ROLES:
        raise ValueError(f"message role {role!r} is not one of {', '.join(ROLES)}")
    return {"role": role, "content": content, "name": name}


def is_multi_turn(messages: list[dict[str, Any]] | None) -> bool:
    """True for a conversation of more than one exchange: more than two user or assistant turns."""
    return messages is not None and sum(m["role"] != "system" for m in messages) > 2


@dataclass
class Candidate:
    """One instruction (and, once answered, its response) on its way through the pipeline.

    Instructors create candidates; the novelty stage fills `embedding` and `similarity`; judges fill
    `verdict` and `score`; the writer turns accepted candidates into Arrow rows.
    """

    category: str
    instruction: str
    response: str | None = None
    system: str | None = None
    skip_prompt_formatting: bool = False
    topic: str | None = None
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    template_digest: str = ""
    similarity: float | None = None
    verdict: str | None = None
    score: float | None = None
    embedding: Any = None  # numpy float32 vector, set by the novelty stage
    tokens_estimated: bool = False
    # The whole conversation of a multi-turn row (see `message`); None for a single-turn row, whose
    # one exchange `conversation` derives from system/instruction/response. A multi-turn row keeps
    # its first user turn in `instruction` and the first assistant turn in `response`.
    messages: list[dict[str, Any]] | None = None
    source_id: str | None = None  # id of the committed row a derived row was made from
    meta: dict[str, Any] = field(default_factory=dict)  # instructor-private state between calls
    created_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        """The deterministic row id (see `row_id`)."""
        return row_id(self.instruction, self.system)

    @property
    def is_conversation(self) -> bool:
        """True for a multi-turn row (see `is_multi_turn`)."""
        return is_multi_turn(self.messages)

    @property
    def needs_response(self) -> bool:
        """True while the candidate still waits for its answer call."""
        return self.response is None

    def add_template(self, digest: str) -> None:
        """Records one more prompt template that went into this row: `template_digest` holds the
        digests of all of them, joined by "+" in the order first used (generating template first)."""
        used = self.template_digest.split("+") if self.template_digest else []
        if digest not in used:
            self.template_digest = "+".join([*used, digest])

    def add_usage(self, prompt_tokens: int, completion_tokens: int, estimated: bool) -> None:
        """Adds one teacher call's token usage to this candidate's account."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.tokens_estimated = self.tokens_estimated or estimated


def conversation(candidate: Candidate) -> list[dict[str, Any]]:
    """Returns the messages of any candidate: its own `messages` for a multi-turn row, else the
    one-exchange equivalent (system turn when set, the instruction, the response when answered)."""
    if candidate.messages is not None:
        return [dict(m) for m in candidate.messages]
    turns = [message("system", candidate.system)] if candidate.system else []
    turns.append(message("user", candidate.instruction))
    if candidate.response is not None:
        turns.append(message("assistant", candidate.response))
    return turns


def novelty_text(instruction: str, system: str | None = None, messages: list[dict[str, Any]] | None = None) -> str:
    """The text the novelty stage embeds for a row, and the one a merge embeds again.

    A single-turn row: its instruction. A conversation (more than one exchange in `messages`): its
    opening, the system prompt (the characters and setting) and a blank line before the first user
    turn (`instruction`). Later turns are left out: they follow from the opening, and a whole
    transcript is far longer than the embedder reads (it truncates), so two role plays on one setting
    are near-duplicates however their talk wanders; the row id covers the same opening.
    """
    if not is_multi_turn(messages) or not system:
        return instruction
    return f"{system}\n\n{instruction}"
