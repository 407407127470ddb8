"""The topics file: read it if it exists, otherwise ask the teacher for topics and save them.

One topic per line; blank lines and lines starting with '#' are ignored. Duplicates (compared
case-insensitively) and topics on the avoid list are dropped, both from a file and from the teacher.
A generated file is written atomically, so an interrupted run never leaves half a file that the next
run would take as complete.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from pathlib import Path

from instructflow.instructors.parsing import numbered_items
from instructflow.instructors.render import load_template
from instructflow.instructors.teacher.api import RequestFailed, Teacher

log = logging.getLogger(__name__)

PER_CALL = 50  # topics asked for in one call: a longer list risks running into max_tokens
MAX_TOPIC_CHARS = 120
_DECORATION = re.compile(r"^[\s\"'*_`]+|[\s\"'*_`.;,]+$")


class TopicsError(ValueError):
    """A topics file that cannot be used, or topics that could not be generated."""


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


class TopicFilter:
    """Keeps each topic once (case-insensitively) and drops any that mention an avoided subject."""

    def __init__(self, avoid: list[str] | None = None) -> None:
        words = [_key(a) for a in avoid or [] if a.strip()]
        self._avoid = [re.compile(rf"\b{re.escape(a)}\b") for a in words]
        self.seen: set[str] = set()
        self.topics: list[str] = []

    def add(self, topic: str) -> bool:
        """Adds `topic` if it is new and allowed; returns whether it was added."""
        topic = _DECORATION.sub("", topic.strip().split("\n")[0]).strip()
        key = _key(topic)
        if not key or len(topic) > MAX_TOPIC_CHARS or key in self.seen:
            return False
        if any(pattern.search(key) for pattern in self._avoid):
            return False
        self.seen.add(key)
        self.topics.append(topic)
        return True


def read_topics(path: str | Path, avoid: list[str] | None = None) -> list[str]:
    """Topics from an existing file.

    Raises:
        TopicsError: the file cannot be read, or holds no usable topic (message names the file).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TopicsError(f"{path}: cannot read topics file: {exc}") from None
    kept = TopicFilter(avoid)
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            kept.add(line)
    if not kept.topics:
        raise TopicsError(
            f"{path}: topics file has no usable topic (one per line; '#' starts a comment; "
            "topics on the avoid list are dropped); delete it to have topics generated"
        )
    return kept.topics


def write_topics(path: str | Path, topics: list[str], header: str = "") -> None:
    """Writes topics one per line via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in header.splitlines()) + "".join(f"{t}\n" for t in topics)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def generate_topics(
    teacher: Teacher, count: int, avoid: list[str] | None = None, max_calls: int | None = None
) -> list[str]:
    """Asks the teacher (category and call "topics") until `count` distinct topics are collected
    or `max_calls` calls were made (default: three per batch of `PER_CALL`, plus two).

    Failed calls (`RequestFailed`) count as calls; `FatalTeacherError` and `BudgetExhausted` pass
    through. Returns at most `count` topics, possibly fewer.
    """
    template = load_template("topics", frozenset({"count", "avoid_topics"}))
    kept = TopicFilter(avoid)
    max_calls = max_calls or 3 * math.ceil(count / PER_CALL) + 2
    for _ in range(max_calls):
        missing = count - len(kept.topics)
        if missing <= 0:
            break
        # Name what we already have as well, so later calls do not repeat it (bounded prompt size).
        shown = [*(avoid or []), *kept.topics[-100:]]
        prompt = template.render({"count": min(PER_CALL, missing), "avoid_topics": ", ".join(shown)})
        try:
            reply = await teacher.chat([{"role": "user", "content": prompt}], category="topics", call="topics")
        except RequestFailed as exc:
            log.warning("topics call failed (%s); trying again", exc.reason)
            continue
        for item in numbered_items(reply.text):
            kept.add(item)
    return kept.topics[:count]


async def load_or_generate_topics(
    path: str | Path, teacher: Teacher, count: int, avoid: list[str] | None = None
) -> list[str]:
    """The topics of a run: read from `path` if it exists, else generated, saved there and returned.

    Raises:
        TopicsError: an unreadable or empty file, or no topic could be generated.
    """
    path = Path(path)
    if path.exists():
        return read_topics(path, avoid)
    topics = await generate_topics(teacher, count, avoid)
    if not topics:
        raise TopicsError(f"{path}: no topics file, and the teacher produced no usable topic")
    if len(topics) < count:
        log.warning("%s: asked for %d topics, the teacher gave %d distinct ones", path, count, len(topics))
    write_topics(path, topics, header=f"topics generated by instructflow ({len(topics)}); edit freely")
    return topics
