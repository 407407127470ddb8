"""Parsing and formatting helpers for the category modules (private: the registry skips `_` modules).

Like `parsing.py`, nothing here raises on malformed text: helpers return what they recognise. Parsers
key on upper-case labels, numbers and markers rather than on ordinary words, so that a reply whose
content words differ from the expected ones (another teacher, or the stub's perturbed copies) still
parses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import yaml

_FENCED = re.compile(r"^[ \t]*```[^\n`]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)
_KEY_VALUE = re.compile(r"^\s*([A-Za-z][\w .-]{0,39}?)\s*:\s*(.*\S)\s*$")
_INPUT = re.compile(r"BEGININPUT\s*\n(.*?)\n\s*ENDINPUT", re.DOTALL)
_CONTEXT = re.compile(r"^\s*BEGINCONTEXT\s*\n(.*?)^\s*ENDCONTEXT\s*$", re.DOTALL | re.MULTILINE)
_INSTRUCTION = re.compile(r"BEGININSTRUCTION\s*\n(.*?)\n\s*ENDINSTRUCTION", re.DOTALL)


def _label_pattern(labels: Iterable[str]) -> re.Pattern[str]:
    names = "|".join(
        re.escape(label).replace(r"\ ", r"\s+") for label in sorted(labels, key=len, reverse=True)
    )
    # Optional Markdown decoration, the label, an optional item number, then ':' '.' or ')'.
    return re.compile(
        rf"^[ \t>#*_]*({names})[*_]*(?:[ \t]*\d{{1,3}})?[*_]*[ \t]*[:.)][*_]*[ \t]*(.*)$",
        re.IGNORECASE,
    )


def labelled_lines(text: str, labels: Iterable[str]) -> list[tuple[str, str]]:
    """(LABEL, value) for every line that starts with one of `labels`; following unlabelled lines are
    continuation of the value. Labels come back upper-cased with single spaces."""
    pattern = _label_pattern(labels)
    fields: list[tuple[str, str]] = []
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            fields.append((" ".join(match.group(1).upper().split()), match.group(2).strip()))
        elif fields and line.strip():
            label, value = fields[-1]
            fields[-1] = (label, f"{value}\n{line.strip()}".strip())
    return fields


def records(text: str, labels: Iterable[str], first: str | None = None) -> list[dict[str, str]]:
    """Groups labelled fields into records: a record ends where its `first` label (default: the
    first of `labels`) or an already-seen label appears again. Empty values are left out."""
    labels = list(labels)
    first = (first or labels[0]).upper()
    out: list[dict[str, str]] = []
    for label, value in labelled_lines(text, labels):
        if not out or label == first or label in out[-1]:
            out.append({})
        if value:
            out[-1][label] = value
    return [record for record in out if record]


def code_only(text: str) -> str:
    """The code in a reply: the contents of its fenced blocks (joined), or, without fences, the text
    with any stray fence lines removed. An unclosed final fence (a truncated reply) still counts."""
    blocks = [block.strip("\n") for block in _FENCED.findall(text)]
    if any(block.strip() for block in blocks):
        return "\n\n".join(block for block in blocks if block.strip()).strip()
    return "\n".join(
        line for line in text.splitlines() if not line.strip().startswith("```")
    ).strip()


def load_structured(text: str, fmt: str) -> Any | None:
    """Parses a whole reply (fences allowed) as `json` or `yaml`; None when it does not parse."""
    body = code_only(text)
    if not body:
        return None
    try:
        return json.loads(body) if fmt == "json" else yaml.safe_load(body)
    except (ValueError, yaml.YAMLError, RecursionError):
        return None


def word_count(text: str) -> int:
    return len(text.split())


# -- the closed-context format ------------------------------------------------------------------
def format_input(blocks: list[tuple[dict[str, str], str]], instruction: str) -> str:
    """Renders input blocks (metadata, text) and an instruction in the BEGININPUT/BEGININSTRUCTION
    layout. Every block carries a BEGINCONTEXT section, empty when it has no metadata."""
    lines: list[str] = []
    for meta, body in blocks:
        lines += [
            "BEGININPUT",
            "BEGINCONTEXT",
            *(f"{k}: {v}" for k, v in meta.items()),
            "ENDCONTEXT",
        ]
        lines += [body.strip(), "ENDINPUT"]
    lines += ["BEGININSTRUCTION", instruction.strip(), "ENDINSTRUCTION"]
    return "\n".join(lines)


def parse_inputs(text: str) -> list[tuple[dict[str, str], str]]:
    """The complete (metadata, text) input blocks of a reply; blocks without text are left out."""
    blocks = []
    for span in _INPUT.findall(text):
        meta: dict[str, str] = {}
        context = _CONTEXT.search(span)
        if context:
            for line in context.group(1).splitlines():
                match = _KEY_VALUE.match(line)
                if match:
                    meta[match.group(1).strip().lower()] = match.group(2)
            span = span[context.end() :]
        if "BEGINCONTEXT" in span or "BEGININPUT" in span:
            continue  # a broken or nested block: better lost than half-read
        body = span.strip()
        if body:
            blocks.append((meta, body))
    return blocks


def parse_instruction(text: str) -> str | None:
    """The text of the first complete BEGININSTRUCTION ... ENDINSTRUCTION section, if any."""
    match = _INSTRUCTION.search(text)
    if match is None:
        return None
    return match.group(1).strip() or None
