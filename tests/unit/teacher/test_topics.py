"""The topics file: read, or generated with the teacher, deduplicated, filtered and saved."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from instructflow.instructors.teacher.api import Reply, RequestFailed
from instructflow.instructors.teacher.client import TeacherClient
from instructflow.instructors.teacher.stub import StubTeacher
from instructflow.instructors.teacher.topics import (
    TopicsError,
    generate_topics,
    load_or_generate_topics,
    read_topics,
)


class ScriptedTeacher:
    """A Teacher that answers from a list of replies (a RequestFailed entry is raised)."""

    def __init__(self, replies: list[str | RequestFailed]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    async def chat(self, messages, *, category, call, max_tokens=None, temperature=None) -> Reply:
        assert (category, call) == ("topics", "topics")
        self.prompts.append(messages[-1]["content"])
        reply = self.replies.pop(0) if self.replies else "1. Tides"
        if isinstance(reply, RequestFailed):
            raise reply
        return Reply(reply, 10, 10, "scripted")


def test_reads_a_file_skipping_comments_blanks_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "topics.txt"
    path.write_text("# my topics\n\nTide pools\n  tide   POOLS \nBeekeeping\n# Sailing\nPolitics of ports\n")
    assert read_topics(path, avoid=["politics"]) == ["Tide pools", "Beekeeping"]


@pytest.mark.parametrize("text", ["", "\n\n# only a comment\n"])
def test_an_empty_file_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty-topics.txt"
    path.write_text(text)
    with pytest.raises(TopicsError, match="empty-topics.txt.*no usable topic"):
        asyncio.run(load_or_generate_topics(path, ScriptedTeacher([]), 5))


def test_an_unreadable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "binary-topics.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(TopicsError, match="binary-topics.txt.*cannot read"):
        read_topics(path)


def test_generation_dedupes_filters_and_is_bounded() -> None:
    teacher = ScriptedTeacher(
        [
            "1. Tide pools\n2. **Beekeeping**\n3. tide POOLS\n4. Election campaigns\n",
            RequestFailed("server_error"),
            "1. Beekeeping\n2. Kite building.\n",
        ]
    )
    topics = asyncio.run(generate_topics(teacher, 10, avoid=["election"], max_calls=4))
    assert topics == ["Tide pools", "Beekeeping", "Kite building", "Tides"]
    assert len(teacher.prompts) == 4  # gave up after the bound, with fewer than asked for
    assert "election" in teacher.prompts[0] and "Beekeeping" in teacher.prompts[-1]  # avoid + seen


def test_missing_file_is_generated_with_the_stub_saved_and_reused(tmp_path: Path, make_config) -> None:
    path = tmp_path / "out" / "topics.txt"
    with StubTeacher(seed=4) as stub:
        client = TeacherClient(make_config(), base_url=stub.base_url)
        first = asyncio.run(load_or_generate_topics(path, client, 60, avoid=["volcano"]))
        calls = stub.stats()["requests"]
        again = asyncio.run(load_or_generate_topics(path, client, 60, avoid=["volcano"]))
        assert stub.stats()["requests"] == calls  # the second run read the file
    assert len(first) == 60 and again == first
    assert len({t.casefold() for t in first}) == 60
    assert not any("volcano" in t.casefold() for t in first)
    assert calls >= 2  # more than one call of at most 50 topics
    assert path.read_text().startswith("# ") and not list(path.parent.glob(".topics.txt.*"))
