"""Structured replies for small teachers: GBNF grammars that fix the shape of a reply.

A category may declare the shape of a call's reply as a GBNF grammar (llama.cpp's grammar format,
https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md): the teacher can then only
sample text in that shape. A large teacher follows a prompt's layout anyway; a small one (the
embedded SmolLM2-135M) mostly does not, and without a grammar almost none of its replies parse. With
one, every reply has the labels, markers and counts the category's parser reads; whether what fills
them is any good is still the model's business (and the parser's and judges' checks still apply).

Whether a grammar is sent at all is the client's decision (`teacher.grammar`, see
`teacher.client`); a category only says what the reply looks like, per call and often per request
(`rp` lists the scene's cast as the only speaker markers). The builders here keep grammars small
and readable: prose as bounded sentences of plain words, names as capitalised words, literals
escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

# Plain prose: words of letters, an apostrophe or a comma (no colon, so a sentence can never read
# as a `Label:` or `Name:` marker; no asterisk or quote, so nothing is left unbalanced; no digits or
# hyphens, from which a small model builds endless "2020-2021-..." runs that hit max_tokens).
PROSE_RULES = r"""
word ::= [A-Za-z] [a-z']{0,11} ","?
sentence ::= [A-Z] [a-z']{0,11} (" " word){SENT_MIN,SENT_MAX} [.!?]
"""
NAME_RULES = r"""
name ::= cap (" " cap){1,2}
cap ::= [A-Z] [a-z]{2,11}
"""


def literal(text: str) -> str:
    """`text` as a GBNF string literal (quotes, backslashes and newlines escaped)."""
    return json.dumps(text, ensure_ascii=False)


def one_of(options: Iterable[str]) -> str:
    """A GBNF alternative of literals: `("A" | "B")`, longest first so a prefix never wins early."""
    items = sorted(dict.fromkeys(options), key=len, reverse=True)
    if not items:
        raise ValueError("one_of needs at least one option")
    return "(" + " | ".join(literal(item) for item in items) + ")"


def prose(rule: str, sentences: tuple[int, int]) -> str:
    """A rule `rule ::= sentence (" " sentence){a,b}` for `sentences` = (least, most) sentences."""
    least, most = sentences
    if least < 1 or most < least:
        raise ValueError(f"bad sentence range {sentences}")
    tail = f' (" " sentence){{{least - 1},{most - 1}}}' if most > 1 else ""
    return f"{rule} ::= sentence{tail}"


def build(rules: Iterable[str], *, words: tuple[int, int] = (5, 24), names: bool = False) -> str:
    """A whole grammar: `rules` (the first defines `root`) plus the shared prose rules, whose
    sentences have `words` = (least, most) words, and the name rules when `names`."""
    least, most = words
    shared = PROSE_RULES.replace("SENT_MIN", str(max(least - 1, 0))).replace("SENT_MAX", str(most - 1))
    parts = [*rules, shared.strip()]
    if names:
        parts.append(NAME_RULES.strip())
    return "\n".join(parts) + "\n"
