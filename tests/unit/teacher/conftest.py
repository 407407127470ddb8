"""Fixtures for the teacher tests: a stub teacher per test and configs that point at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from instructflow.config import TeacherConfig
from instructflow.instructors.teacher.retry import Clock
from instructflow.instructors.teacher.stub import StubTeacher

KEY_ENV = "INSTRUCTFLOW_TEST_TEACHER_KEY"
SECRET = "sk-test-5e3cr3t-d0-n0t-l0g-9f8e7d6c"


class RecordingClock(Clock):
    """Real time, but every requested sleep is recorded in `sleeps` (in seconds, as asked), so a
    test reads which waits happened instead of timing them."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


@pytest.fixture
def recording_clock() -> RecordingClock:
    """A real clock that records the sleeps asked of it."""
    return RecordingClock()


@pytest.fixture
def stub() -> Iterator[StubTeacher]:
    """A fresh stub teacher (seed 7, no faults) on a free port."""
    with StubTeacher(seed=7) as server:
        yield server


@pytest.fixture
def make_config(monkeypatch: pytest.MonkeyPatch) -> Callable[..., TeacherConfig]:
    """Builds a TeacherConfig with fast back-off; the test key is in the environment."""
    monkeypatch.setenv(KEY_ENV, SECRET)

    def make(**overrides: Any) -> TeacherConfig:
        values: dict[str, Any] = {
            "model": "stub-model",
            "api_key_env": KEY_ENV,
            "timeout_s": 5.0,
            "max_attempts": 4,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
        }
        values.update(overrides)
        return TeacherConfig(**values)

    return make


@pytest.fixture
def key_env() -> str:
    """The name of the environment variable holding the test key."""
    return KEY_ENV


@pytest.fixture
def secret() -> str:
    """The test key itself (must never show up in messages)."""
    return SECRET
