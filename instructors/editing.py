"""Damage for the `editor` category: a text corrupted in code, and how close a correction came back.

The corruption is done here with a seeded rng rather than by the teacher: it costs no tokens, the
same source row always gets the same damage (a resumed run asks for the same correction, and the
row's id stays the same), and every kind of damage is known to be there. Three families are mixed:

- typos: two letters swapped, a letter dropped, a letter doubled;
- grammar: a word repeated ("the the"), a homophone swapped (their/there, its/it's, then/than, ...),
  the wrong indefinite article (a/an);
- awkward style: a sentence started in lower case, a comma dropped, a filler word slipped in.

A correction is judged with rapidfuzz's normalised Indel similarity (`similarity`): it must stay
close to the original (`min_similarity`) and be closer to it than the damaged text was, so a teacher
that rewrites the piece, or hands the damage back unchanged, gives no row.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from rapidfuzz import fuzz

NOT_CLOSE = "not_close"  # the correction strayed from the original
NOT_CORRECTED = "not_corrected"  # no closer to the original than the damaged text

_HOMOPHONES = {
    "their": "there", "there": "their", "they're": "their", "your": "you're", "you're": "your",
    "its": "it's", "it's": "its", "then": "than", "than": "then", "to": "too", "too": "to",
    "affect": "effect", "effect": "affect", "lose": "loose", "loose": "lose", "were": "where",
    "where": "were", "whose": "who's", "who's": "whose", "accept": "except", "except": "accept",
}
_FILLERS = ("really", "basically", "kind of", "actually", "very", "just", "sort of")
_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)([A-Z][a-z]+)\b")


def similarity(a: str, b: str) -> float:
    """Normalised Indel similarity of two texts, 0..1 (1: identical)."""
    return fuzz.ratio(a, b) / 100.0


def _typo(text: str, rng: random.Random) -> str | None:
    words = [m for m in _WORD.finditer(text) if len(m.group()) >= 4]
    if not words:
        return None
    m = rng.choice(words)
    w = m.group()
    i = rng.randrange(1, len(w) - 1)
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap" and w[i] != w[i + 1]:
        new = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    elif kind == "drop":
        new = w[:i] + w[i + 1 :]
    else:
        new = w[:i] + w[i] + w[i:]
    return text[: m.start()] + new + text[m.end() :]


def _repeat(text: str, rng: random.Random) -> str | None:
    words = [m for m in _WORD.finditer(text) if m.start() > 0 and len(m.group()) <= 6]
    if not words:
        return None
    m = rng.choice(words)
    return text[: m.start()] + f"{m.group()} " + text[m.start() :]


def _homophone(text: str, rng: random.Random) -> str | None:
    words = [m for m in _WORD.finditer(text) if m.group() in _HOMOPHONES]
    if not words:
        return None
    m = rng.choice(words)
    return text[: m.start()] + _HOMOPHONES[m.group()] + text[m.end() :]


def _article(text: str, rng: random.Random) -> str | None:
    spots = list(re.finditer(r"\b(a|an|A|An)\b(?= [A-Za-z])", text))
    if not spots:
        return None
    m = rng.choice(spots)
    swapped = {"a": "an", "an": "a", "A": "An", "An": "A"}[m.group()]
    return text[: m.start()] + swapped + text[m.end() :]


def _lower_start(text: str, rng: random.Random) -> str | None:
    starts = [m for m in _SENTENCE_START.finditer(text)]
    if not starts:
        return None
    m = rng.choice(starts)
    return text[: m.start(1)] + m.group(1).lower() + text[m.end(1) :]


def _drop_comma(text: str, rng: random.Random) -> str | None:
    commas = [m.start() for m in re.finditer(r",(?= )", text)]
    if not commas:
        return None
    at = rng.choice(commas)
    return text[:at] + text[at + 1 :]


def _filler(text: str, rng: random.Random) -> str | None:
    spots = [m for m in _WORD.finditer(text) if m.start() > 0 and m.group().islower() and len(m.group()) >= 5]
    if not spots:
        return None
    m = rng.choice(spots)
    return text[: m.start()] + f"{rng.choice(_FILLERS)} " + text[m.start() :]


Damage = Callable[[str, random.Random], str | None]
DAMAGE: dict[str, Damage] = {
    "typo": _typo,
    "repeated_word": _repeat,
    "homophone": _homophone,
    "article": _article,
    "lower_case_start": _lower_start,
    "dropped_comma": _drop_comma,
    "filler_word": _filler,
}
# Damage that a mechanical proofreader can undo (the stub teacher's `proofread`); every corrupted
# text carries at least one of these, so a test double's correction can always improve on it.
MECHANICAL = ("repeated_word", "lower_case_start")


def corrupt(text: str, rng: random.Random, per_100_words: float = 4.0, min_edits: int = 2) -> tuple[str, list[str]]:
    """`text` with about `per_100_words` edits per hundred words (at least `min_edits`), drawn from
    `DAMAGE`, the first one mechanical. Returns the damaged text and the kinds of damage done."""
    words = len(text.split())
    wanted = max(min_edits, round(words * per_100_words / 100))
    done: list[str] = []
    kinds = list(DAMAGE)
    for _ in range(wanted * 4):  # a kind may find nothing to damage (no comma, no homophone)
        if len(done) >= wanted:
            break
        kind = rng.choice(MECHANICAL) if not done else rng.choice(kinds)
        changed = DAMAGE[kind](text, rng)
        if changed is not None and changed != text:
            text = changed
            done.append(kind)
    return text, done


def proofread(text: str) -> str:
    """A mechanical proofreader: repeated words collapsed, sentences started with a capital. What the
    stub teacher answers an `editor` prompt with (it undoes the `MECHANICAL` damage only)."""
    text = re.sub(r"\b([A-Za-z']+) \1\b", r"\1", text)
    return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
