"""What the rest of instructflow needs from a teacher: one async chat call and a few error types."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

# Sent with every request so that the stub teacher (and request logs) can tell which instructor and
# which call a request belongs to. Real OpenAI-compatible servers ignore unknown headers.
CATEGORY_HEADER = "X-Instructflow-Category"
CALL_HEADER = "X-Instructflow-Call"

# True while an instructor makes its generating call(s) (set by the runner around `generate`), so a
# client in batch mode can tell them from calls on a candidate (answers, judges, a category's
# further calls on one candidate) without every category saying which of its calls are which.
GENERATING: ContextVar[bool] = ContextVar("instructflow_generating", default=False)


@dataclass(frozen=True)
class Reply:
    """One completed teacher call."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    tokens_estimated: bool = False  # True when the server sent no `usage` and we counted ourselves
    latency_s: float = 0.0
    attempts: int = 1
    # Why generation stopped, as the server said: "stop", "length" (cut at max_tokens),
    # "content_filter", ...; None when the server did not say.
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        """True when the reply was cut at `max_tokens` (`finish_reason` "length")."""
        return self.finish_reason == "length"


@dataclass
class TeacherStats:
    """What one teacher client did: attempts by status class, retries, failures, tokens."""

    requests: dict[str, int]  # attempts by status class (2xx, 429, 5xx, timeout, ...), retries included
    retries: int  # failed attempts that were tried again
    replies: int  # attempts that brought back a usable reply
    failures: dict[str, int]  # requests that failed for good, by reason
    prompt_tokens: int
    completion_tokens: int
    usage: dict[str, Any] = field(default_factory=dict)  # breakdowns by model and category
    truncated: int = 0  # replies cut at max_tokens (finish_reason "length"), counted in `replies`
    grammar: int = 0  # requests sent with a grammar (`teacher.grammar`)
    batch: dict[str, int] = field(default_factory=dict)  # batch mode: `BatchStats` fields (empty in sync mode)

    @property
    def attempts(self) -> int:
        return sum(self.requests.values())


class TeacherError(Exception):
    """Base class of every teacher failure."""


class RequestFailed(TeacherError):
    """This one request failed for good (retries exhausted, 400/404, unusable reply).

    The run goes on; the request is counted and written to the dead-letter file with `reason`.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FatalTeacherError(TeacherError):
    """The run cannot go on (401/403: bad or missing key). The message names what to check."""


class BudgetExhausted(TeacherError):
    """The token or cost budget is spent: no new requests start; in-flight ones finish."""


class Teacher(Protocol):
    """The one call instructors make. Implementations retry, rate-limit and count tokens."""

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        category: str,
        call: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        grammar: str | None = None,
    ) -> Reply:
        """Sends one chat completion request; raises a `TeacherError` subclass on failure.

        `grammar`: a GBNF grammar the reply must follow (`instructors.grammar`); the client sends it
        or not as `teacher.grammar` says. Callers pass it only when they have one, so a teacher
        that knows no grammar need not take the argument."""
        ...
