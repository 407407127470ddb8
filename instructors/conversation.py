"""Multi-speaker transcripts: reading a teacher's `Name: text` transcript into clean, alternating turns.

The in-character categories (`rp`, `gtkm`) ask the teacher for a transcript in which every turn
starts at the beginning of a line with the speaker's name and a colon::

    Mira Vale: *sets down the lantern* You came after all.
    Tobias: I said I would. Is the boat ready?

`read_conversation` turns such a reply into `Turn`s and then into chat messages:

1. **Markers.** A line opening with a name-like label and a colon starts a turn (Markdown bold, a
   ``(whispering)`` aside and ``>`` quoting around the label are allowed); other lines continue
   the turn before them. Text before the first marker (a preamble) is ignored.
2. **Speakers.** Each label is matched to the `Cast` with fuzzy matching (rapidfuzz): a first name,
   a surname, a title, a typo or a different case still finds its character; a label that matches
   no one, or two characters equally well, is a *hallucinated speaker* and its turn is dropped.
3. **Cleaning.** Reminder and meta text (``(Remember to stay in character.)``, ``[OOC: ...]``,
   ``((...))``, ``[End of scene]``, chat-template tokens) is removed, unbalanced action delimiters
   (a lone ``*`` or ``_``) are dropped, and turns left empty are dropped.
4. **Shape.** Consecutive turns of one speaker are merged; the conversation opens with the user's
   given `opening` (the teacher repeating it is tolerated); a trailing user turn (the teacher writing
   the user's next line after the last answer) and exchanges past `max_exchanges` are cut.

A conversation that breaks format raises `ConversationRejected` with one of the `REASONS`: the
category's `respond` lets it through and the runner books the candidate as rejected under that
reason (see `rejection.py`). Nothing here calls the teacher or needs Ray.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, utils

from instructflow.instructors.record import message
from instructflow.instructors.rejection import CandidateRejected

# The reject reasons (they reach the books as instructor:<reason> and rejects.jsonl).
TOO_SHORT = "conversation_too_short"  # fewer whole exchanges than asked for after cleaning
ALTERNATION = "conversation_alternation"  # the user spoke twice running, or an answer came first
WRONG_VOICE = "conversation_wrong_voice"  # a turn out of character, or speaking for someone else
UNKNOWN_SPEAKERS = "conversation_unknown_speakers"  # too many turns by speakers outside the cast
NO_TRANSCRIPT = "conversation_no_transcript"  # no speaker markers at all
REASONS = (TOO_SHORT, ALTERNATION, WRONG_VOICE, UNKNOWN_SPEAKERS, NO_TRANSCRIPT)

_PARTICLES = frozenset(["of", "the", "de", "la", "le", "van", "von", "der", "den", "da", "del", "di", "du", "al", "el", "bin", "ibn", "y"])
_MARKER = re.compile(
    r"^[ \t>#]*(?:\*\*|__)?[ \t]*(?P<label>[^\W\d_][\w'’.\- ]{0,80}?)[ \t]*"
    r"(?:\((?P<aside>[^()\n]{0,60})\))?[ \t]*(?:\*\*|__)?[ \t]*:(?:\*\*|__)?(?=\s|$)[ \t]*(?P<text>.*)$"
)
_MAX_LABEL_WORDS = 4
_META = [
    re.compile(r"<\|[^|>\n]{1,40}\|>|</?s>|\[/?INST\]", re.IGNORECASE),  # chat-template tokens
    re.compile(r"\(\([^()]*\)\)"),  # ((out of character))
    re.compile(r"\[\s*(?:OOC|out of character|note|reminder|remember|author'?s note)\b[^\]]*\]", re.IGNORECASE),
    re.compile(
        r"\(\s*(?:OOC|out of character|note|reminder|remember|stay(?:ing)? in character|keep in character|"
        r"continue|continuing|end of|to be continued)\b[^()]*\)",
        re.IGNORECASE,
    ),
    re.compile(r"^[ \t]*[\[(]\s*(?:the end|end|scene|fin|to be continued|end of)\b[^\])\n]*[\])][ \t]*$",
               re.IGNORECASE | re.MULTILINE),
]
_OUT_OF_CHARACTER = re.compile(
    r"\bas an ai\b|\bi(?:'m| am) (?:just |only )?an? (?:ai|artificial intelligence|language model)\b"
    r"|\blanguage model\b|\bi cannot (?:role-?play|continue this (?:role-?play|conversation))\b",
    re.IGNORECASE,
)
# A lone `*` that touches a word (an action delimiter), not one between spaces ("2 * 3").
_SINGLE_STAR = re.compile(r"(?<![*\s])\*(?!\*)|(?<!\*)\*(?![*\s])")
_DOUBLE_STAR = re.compile(r"\*\*")
_UNDERSCORE = re.compile(r"(?<![\w_])_(?!_)|(?<!_)_(?![\w_])")  # at a word edge: not snake_case
_EMPTY_ACTION = re.compile(r"(?<!\*)\*\s*\*(?!\*)|(?<![\w_])_\s*_(?![\w_])")


class ConversationRejected(CandidateRejected):
    """A transcript that breaks format; `reason` is one of `REASONS`."""


@dataclass(frozen=True)
class Turn:
    """One speaker's turn: `speaker` is the cast's name for them (or the label as written, before
    matching)."""

    speaker: str
    text: str


@dataclass
class Cleaning:
    """What reading a transcript removed, for the caller to count."""

    unknown: Counter[str] = field(default_factory=Counter)  # dropped turns, by label as written
    meta: int = 0  # reminder / out-of-character snippets removed
    delimiters: int = 0  # stray `*` / `_` removed
    empty: int = 0  # turns left empty and dropped
    merged: int = 0  # turns joined to the same speaker's turn before them
    cut: int = 0  # turns cut at the end (a trailing user turn, exchanges past the maximum)


class Cast:
    """Who may speak, and which of them is the user.

    Args:
        names: the characters' names, as the cast knows them.
        user: the name of the speaker the user plays (one of `names` or an extra name such as
            "Narrator" or "User").
        aliases: other labels that stand for a name (e.g. "Interviewer" for the user).
        cutoff: the least rapidfuzz score (0-100) a label needs to count as a name.
    """

    def __init__(
        self, names: Iterable[str], *, user: str, aliases: Mapping[str, Iterable[str]] | None = None,
        cutoff: float = 80.0,
    ) -> None:
        self.names = list(dict.fromkeys([user, *names]))
        self.user = user
        self.cutoff = cutoff
        self._forms: dict[str, list[str]] = {}
        for name in self.names:
            forms = [name, *(aliases or {}).get(name, ())]
            # A first name, a surname or a title alone also names the character ("Mira" for
            # "Mira Vale"); short particles ("de", "van") do not.
            words = [w for w in utils.default_process(name).split() if len(w) >= 3 and w not in _PARTICLES]
            self._forms[name] = [utils.default_process(f) for f in forms] + (words if len(words) > 1 else [])

    def score(self, label: str, name: str) -> float:
        """How well `label` names `name` (0-100): the best plain ratio against the name, an alias
        or one word of the name, or the token-set ratio against the whole name (a label whose words
        are all in the name scores 100)."""
        text = utils.default_process(label)
        if not text:
            return 0.0
        best = max(fuzz.ratio(text, form) for form in self._forms[name])
        if len(text.split()) > 1:
            best = max(best, fuzz.token_set_ratio(text, self._forms[name][0]))
        return best

    def match(self, label: str) -> str | None:
        """The name `label` stands for, or None when it matches no one or two names alike."""
        scores = sorted(((self.score(label, n), n) for n in self.names), reverse=True)
        best, name = scores[0]
        if best < self.cutoff or (len(scores) > 1 and scores[1][0] >= best - 3):
            return None
        return name


def split_turns(text: str, cast: Cast | None = None) -> list[Turn]:
    """The turns of a transcript with their labels as written (asides stripped); lines without a
    marker continue the turn before them, and text before the first marker is dropped. A label is
    a marker when it reads as a name (`_name_like`) or, however long, names someone in `cast`."""
    turns: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = _MARKER.match(line)
        label = match.group("label") if match else ""
        if match and (_name_like(label) or (cast is not None and cast.match(label) is not None)):
            turns.append((" ".join(match.group("label").split()), [match.group("text")]))
        elif turns:
            turns[-1][1].append(line)
    return [Turn(label, "\n".join(lines)) for label, lines in turns]


def _name_like(label: str) -> bool:
    """A marker label reads as a name: at most four words, each capitalised (or uncased script)
    unless it is a particle such as "de" or "of"; so "The plan is simple:" stays text."""
    words = label.replace(".", " ").split()
    if not words or len(words) > _MAX_LABEL_WORDS:
        return False
    return all(not w[0].islower() or w.lower() in _PARTICLES for w in words) and not words[0][0].islower()


def clean_text(text: str, cleaning: Cleaning | None = None) -> str:
    """A turn's text without reminder/meta snippets and stray action delimiters, with tidy spacing."""
    cleaning = cleaning if cleaning is not None else Cleaning()
    for pattern in _META:
        text, found = pattern.subn("", text)
        cleaning.meta += found
    text, found = _balance(text, _DOUBLE_STAR)
    cleaning.delimiters += found
    text, found = _balance(text, _SINGLE_STAR)
    cleaning.delimiters += found
    text, found = _balance(text, _UNDERSCORE)
    cleaning.delimiters += found
    text, found = _EMPTY_ACTION.subn("", text)
    cleaning.delimiters += found
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _balance(text: str, delimiter: re.Pattern[str]) -> tuple[str, int]:
    """Drops the delimiters left without a partner: they pair up left to right within a paragraph,
    and an odd one out (the last) is removed. Returns the text and how many were removed."""
    removed = 0
    paragraphs = text.split("\n\n")
    for i, para in enumerate(paragraphs):
        spots = [m.span() for m in delimiter.finditer(para)]
        if len(spots) % 2:
            start, end = spots[-1]
            paragraphs[i] = para[:start] + para[end:]
            removed += 1
    return "\n\n".join(paragraphs), removed


def read_conversation(
    text: str,
    cast: Cast,
    opening: str,
    *,
    min_exchanges: int,
    max_exchanges: int,
    group_answers: bool = False,
    max_unknown_share: float = 0.34,
) -> tuple[list[Turn], Cleaning]:
    """Reads the transcript that follows the user's `opening` line into alternating turns.

    Args:
        text: the teacher's transcript (it starts with the answer to `opening`).
        cast: the speakers; `cast.user` is the user's side, everyone else the assistant's.
        opening: the user's first line (given to the teacher, not written by it).
        min_exchanges: fewer user/assistant exchanges than this is `TOO_SHORT`.
        max_exchanges: exchanges past this are cut.
        group_answers: whether consecutive turns of different non-user speakers form one answer
            (several characters answering the user in role play); otherwise they break alternation.
        max_unknown_share: a larger share of turns by hallucinated speakers is `UNKNOWN_SPEAKERS`.

    Returns:
        The turns, starting with the opening and alternating user / answer (an answer is one turn,
        or with `group_answers` a run of turns), and what cleaning removed.

    Raises:
        ConversationRejected: the transcript breaks format (`reason` is one of `REASONS`).
    """
    cleaning = Cleaning()
    raw = split_turns(text, cast)
    if not raw:
        raise ConversationRejected(NO_TRANSCRIPT, "no line starts with a speaker's name and a colon", text)
    turns = _known_turns(raw, cast, cleaning, text, max_unknown_share)
    turns = _after_opening(turns, cast, opening, text)
    turns = [Turn(cast.user, opening.strip()), *turns]
    return _alternating(turns, cast, cleaning, text, min_exchanges, max_exchanges, group_answers), cleaning


def _known_turns(raw: list[Turn], cast: Cast, cleaning: Cleaning, text: str, max_unknown: float) -> list[Turn]:
    """The turns of cast members, cleaned; adjacent turns of one speaker are merged, but not across
    a dropped turn (two answers around a hallucinated question stay two, and break alternation)."""
    kept: list[Turn | None] = []
    for turn in raw:
        speaker = cast.match(turn.speaker)
        if speaker is None:
            cleaning.unknown[turn.speaker] += 1
            kept.append(None)  # a gap: the turns around it are not one turn
            continue
        body = clean_text(turn.text, cleaning)
        if not body:
            cleaning.empty += 1
            continue
        _check_voice(speaker, body, cast, text)
        last = kept[-1] if kept else None
        if last is not None and last.speaker == speaker:
            kept[-1] = Turn(speaker, f"{last.text}\n\n{body}")
            cleaning.merged += 1
        else:
            kept.append(Turn(speaker, body))
    unknown = sum(cleaning.unknown.values())
    if unknown > max_unknown * len(raw):
        labels = ", ".join(sorted(cleaning.unknown))
        raise ConversationRejected(UNKNOWN_SPEAKERS, f"{unknown} of {len(raw)} turns by speakers outside the "
                                   f"cast ({labels}); the cast is {', '.join(cast.names)}", text)
    return [t for t in kept if t is not None]


def _check_voice(speaker: str, body: str, cast: Cast, text: str) -> None:
    """A turn out of the character's voice: the model talking as an AI, or the turn opening with
    another cast member's marker (one speaker's line carrying someone else's)."""
    found = _OUT_OF_CHARACTER.search(body)
    if found:
        raise ConversationRejected(WRONG_VOICE, f"{speaker}'s turn steps out of character: {found.group(0)!r}", text)
    inner = _MARKER.match(body.splitlines()[0])
    if inner and _name_like(inner.group("label")):
        other = cast.match(inner.group("label"))
        if other is not None and other != speaker:
            raise ConversationRejected(WRONG_VOICE, f"{speaker}'s turn speaks as {other}", text)


def _after_opening(turns: list[Turn], cast: Cast, opening: str, text: str) -> list[Turn]:
    """The turns after the opening: a first user turn that repeats the opening is dropped; one that
    says something else means the teacher wrote the user's line where the answer belongs."""
    if turns and turns[0].speaker == cast.user:
        if fuzz.token_set_ratio(utils.default_process(turns[0].text), utils.default_process(opening)) >= 85:
            return turns[1:]
        raise ConversationRejected(ALTERNATION, f"the transcript starts with a new {cast.user} line instead of "
                                   "the answer to the opening", text)
    return turns


def _alternating(
    turns: list[Turn], cast: Cast, cleaning: Cleaning, text: str, least: int, most: int, group: bool
) -> list[Turn]:
    exchanges = 0
    out: list[Turn] = []
    for i, turn in enumerate(turns):
        prev = out[-1] if out else None
        user = turn.speaker == cast.user
        if user and prev is not None and prev.speaker == cast.user:
            raise ConversationRejected(ALTERNATION, f"{cast.user} speaks twice with no answer between", text)
        if not user and prev is not None and prev.speaker != cast.user and not group:
            raise ConversationRejected(ALTERNATION, f"{turn.speaker} answers after {prev.speaker} with no "
                                       f"{cast.user} turn between", text)
        if user and exchanges >= most:
            cleaning.cut += len(turns) - i
            break
        if not user and prev is not None and prev.speaker == cast.user:
            exchanges += 1
        out.append(turn)
    if out and out[-1].speaker == cast.user:  # the user's next line, with no answer after it
        out.pop()
        cleaning.cut += 1
    if exchanges < least:
        raise ConversationRejected(TOO_SHORT, f"{exchanges} exchange(s) after cleaning; at least {least} "
                                   "are needed", text)
    return out


def to_messages(turns: Sequence[Turn], cast: Cast, system: str | None, *, labelled: bool) -> list[dict[str, Any]]:
    """Chat messages of alternating turns: the user's turns are `user`, every run of other speakers'
    turns one `assistant` message. With `labelled`, each turn's text carries its `Name: ` marker
    (role play: the row is already formatted); a message's `name` is its speaker when it has one."""
    out = [message("system", system)] if system else []
    for group in _runs(turns, cast.user):
        role = "user" if group[0].speaker == cast.user else "assistant"
        joined: list[Turn] = []  # one speaker's turns around a dropped one read as one turn
        for turn in group:
            if joined and joined[-1].speaker == turn.speaker:
                joined[-1] = Turn(turn.speaker, f"{joined[-1].text}\n\n{turn.text}")
            else:
                joined.append(turn)
        body = "\n\n".join(f"{t.speaker}: {t.text}" if labelled else t.text for t in joined)
        out.append(message(role, body, joined[0].speaker if len(joined) == 1 else None))
    return out


def _runs(turns: Sequence[Turn], user: str) -> list[list[Turn]]:
    runs: list[list[Turn]] = []
    for turn in turns:
        if runs and (runs[-1][0].speaker == user) == (turn.speaker == user):
            runs[-1].append(turn)
        else:
            runs.append([turn])
    return runs


def format_transcript(turns: Sequence[Turn]) -> str:
    """Turns as `Name: text` lines (a blank line between turns)."""
    return "\n\n".join(f"{t.speaker}: {t.text}" for t in turns)
