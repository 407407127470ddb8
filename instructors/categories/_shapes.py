"""GBNF reply shapes of the in-character categories (`character`, `rp`), built per request.

Each builder returns a whole grammar (`instructors.grammar`) that the category's parser accepts by
construction: the labels in order, the counts asked for, names as capitalised words, and, for a
transcript, only the scene's cast as speakers, strictly alternating with the user. A name's initials
are drawn per request, so that a small teacher (which would give every card the same name) writes
different names within a reply and, mostly, across replies; the parser's uniqueness check still
applies.
"""

from __future__ import annotations

import random
import string

from instructflow.instructors.grammar import build, literal, one_of, prose

_INITIALS = [c for c in string.ascii_uppercase if c not in "QXZ"]


def _name_rule(rule: str, rng: random.Random) -> str:
    """`rule ::= "K" [a-z]{2,9} " " "M" [a-z]{2,11}`: a two-word name with drawn initials."""
    first, last = rng.choice(_INITIALS), rng.choice(_INITIALS)
    return f'{rule} ::= {literal(first)} [a-z]{{2,9}} " " {literal(last)} [a-z]{{2,11}}'


def _names(prefix: str, count: int, rng: random.Random) -> list[str]:
    """`count` name rules whose first initials differ (so the names in one reply do too)."""
    firsts = rng.sample(_INITIALS, count) if count <= len(_INITIALS) else [rng.choice(_INITIALS) for _ in range(count)]
    return [
        f'{prefix}{i} ::= {literal(f)} [a-z]{{2,9}} " " {literal(rng.choice(_INITIALS))} [a-z]{{2,11}}'
        for i, f in enumerate(firsts)
    ]


# How a card's REQUEST starts, one drawn per card: a small model otherwise copies the prompt's
# explanation of the field into every card (identical instructions: exact duplicates).
_REQUESTS = [
    "I would like a character card for", "Please write a character card for", "Make me a card for",
    "Could you create a character for", "I need a role play character for", "Write a card about",
    "Invent a character for", "Give me a character for",
]


def character_cards(count: int, rng: random.Random, min_description_words: int) -> str:
    """`count` cards: REQUEST, NAME, DESCRIPTION (at least `min_description_words` words), PERSONALITY,
    SPEECH STYLE, STAY IN CHARACTER and EXAMPLE LINES, one line each."""
    cards = [
        f'card{i} ::= "REQUEST: " {literal(rng.choice(_REQUESTS))} (" " word){{4,16}} "." "\\n" '
        f'"NAME: " name{i} "\\n" "DESCRIPTION: " desc "\\n" '
        '"PERSONALITY: " two "\\n" "SPEECH STYLE: " one "\\n" "STAY IN CHARACTER: " two "\\n" '
        '"EXAMPLE LINES: " one " / " one "\\n"'
        for i in range(count)
    ]
    words = max(5, -(-min_description_words // 2))  # two sentences of this many words reach the least
    root = "root ::= " + " ".join(f"card{i}" for i in range(count))
    # Sentences of at most 16 words: a small model stops when the grammar lets it, and every token
    # costs time on a CPU.
    return build([root, *cards, *_names("name", count, rng), prose("desc", (2, 2)), prose("two", (1, 2)),
                  prose("one", (1, 1))], words=(words, 16))


def rp_scenes(count: int, size: int, invent: bool, rng: random.Random) -> str:
    """`count` scenes: SCENE, then (when the cast is `invent`ed) `size` CHARACTER lines
    `Name | who they are`, then OPENING."""
    cast = " ".join(f'"CHARACTER: " name{i} " | " two "\\n"' for i in range(size)) if invent else ""
    scene = f'scene ::= "SCENE: " two "\\n" {cast} "OPENING: " one "\\n"'.replace("  ", " ")
    rules = [f"root ::= scene{{{count}}}", scene, prose("two", (1, 2)), prose("one", (1, 1))]
    return build(rules + (_names("name", size, rng) if invent else []), words=(5, 16))


def transcript(user: str, others: list[str], turns: int) -> str:
    """A `Name: text` transcript that answers the user's opening: an answer by one or two of
    `others`, then `turns - 1` times a `user` turn and an answer; nobody else speaks."""
    rules = [
        f"root ::= answer (user answer){{{turns - 1}}}" if turns > 1 else "root ::= answer",
        "answer ::= other other?",
        f'other ::= {one_of(others)} ": " line "\\n"',
        f'user ::= {literal(user)} ": " line "\\n"',
        prose("line", (1, 2)),
    ]
    return build(rules, words=(4, 14))
