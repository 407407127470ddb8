"""Fixtures for the catalog's rule tests: instructors built with fixed seeds, and a fake teacher."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from instructflow.instructors import registry
from instructflow.instructors.base import Instructor
from instructflow.instructors.teacher.api import Reply
from instructflow.prompts import PROMPTS_DIR


class ScriptedTeacher:
    """Answers each call name with a fixed text (or raises a fixed exception); records the calls."""

    def __init__(
        self, replies: dict[str, str | BaseException], default: str = "A plain paragraph."
    ) -> None:
        self.replies, self.default = replies, default
        self.calls: list[dict[str, Any]] = []

    async def chat(self, messages, *, category, call, max_tokens=None, temperature=None, grammar=None) -> Reply:
        self.calls.append(
            {"category": category, "call": call, "messages": messages, "max_tokens": max_tokens, "grammar": grammar}
        )
        reply = self.replies.get(call, self.default)
        if isinstance(reply, BaseException):
            raise reply
        return Reply(text=reply, prompt_tokens=10, completion_tokens=20, model="scripted")

    def count(self, call: str) -> int:
        return sum(1 for c in self.calls if c["call"] == call)


@pytest.fixture
def build() -> Callable[..., Instructor]:
    """build(category, seed=0, topics=..., **params) -> an instructor with a seeded rng."""

    def _build(
        category: str, seed: int = 0, topics: list[str] | None = None, **params: Any
    ) -> Instructor:
        cls = registry.get_instructor(category)
        return cls(
            cls.Params(count=1, **params), topics=topics or ["lighthouses"], rng=random.Random(seed)
        )

    return _build


@pytest.fixture
def recorded() -> Callable[[str], str]:
    """recorded("cot.respond") -> the text of prompts/cot.respond.example.txt."""
    return lambda name: (PROMPTS_DIR / f"{name}.example.txt").read_text(encoding="utf-8")


@pytest.fixture
def run() -> Callable[[Any], Any]:
    return asyncio.run


@pytest.fixture
def scripted() -> type[ScriptedTeacher]:
    """The `ScriptedTeacher` class (test modules do not import conftest)."""
    return ScriptedTeacher
