"""When to try a teacher request again, and how long to wait first.

Servers say how long to wait in three ways: `retry-after-ms` (milliseconds, OpenAI and Azure),
`Retry-After` (seconds, or an HTTP date, RFC 9110) and `x-should-retry` (an explicit yes/no). When
the server says nothing, the delay is "full jitter" exponential back-off: uniform in
[0, min(cap, base * 2**(attempt-1))], which spreads retries of many callers apart instead of
letting them hit the server again in lock-step.

Time comes from a `Clock` so that tests can run the back-off in virtual time and read the exact
delays that were requested (`ManualClock.sleeps`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


class Clock:
    """Real time: monotonic seconds for intervals, wall-clock seconds for HTTP dates."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock(Clock):
    """Virtual time for tests and simulations: `sleep` returns at once, advances both clocks by the
    requested delay and records it in `sleeps`."""

    def __init__(self, start: float = 1_000.0, wall: float | None = None) -> None:
        self._mono = start
        self._wall = time.time() if wall is None else wall
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        """Moves virtual time forward without recording a sleep."""
        self._mono += seconds
        self._wall += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)  # still yield, so other tasks run as they would around a real sleep


@dataclass(frozen=True)
class RetryHint:
    """What the server's headers said about retrying (None where a header was absent or invalid)."""

    delay_s: float | None = None
    should_retry: bool | None = None


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): str(v).strip() for k, v in (headers or {}).items()}


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, or None.

    `retry-after-ms` wins over `Retry-After` because it is more precise. `Retry-After` may be a
    number of seconds (fractions accepted) or an HTTP date, which is compared with `now` (wall-clock
    seconds, default `time.time()`); a date in the past means "now" (0.0).
    """
    values = _lower(headers)
    millis = values.get("retry-after-ms")
    if millis:
        try:
            seconds = float(millis) / 1000.0
            if seconds >= 0 and seconds == seconds:  # rejects negatives and NaN
                return seconds
        except ValueError:
            pass
    raw = values.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
        return seconds if seconds >= 0 and seconds == seconds else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; be lenient with servers that omit it
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_should_retry(headers: Mapping[str, str] | None) -> bool | None:
    """The `x-should-retry` header as True/False, or None when absent or neither."""
    value = _lower(headers).get("x-should-retry", "").lower()
    return {"true": True, "false": False}.get(value)


def retry_hint(headers: Mapping[str, str] | None, now: float | None = None) -> RetryHint:
    """Both retry headers at once."""
    return RetryHint(parse_retry_after(headers, now), parse_should_retry(headers))


class Backoff:
    """Delays between attempts.

    Args:
        base_s: the first full-jitter window (attempt 1 waits up to this).
        max_s: the window never grows beyond this.
        rng: random source for the jitter (seed it in tests).
        retry_after_cap_s: a server-requested delay is honoured exactly up to this many seconds;
            longer requests are cut to it, so a bogus date cannot stall a run for hours.
    """

    def __init__(
        self,
        base_s: float,
        max_s: float,
        rng: random.Random | None = None,
        retry_after_cap_s: float = 300.0,
    ) -> None:
        if base_s <= 0 or max_s <= 0:
            raise ValueError("back-off base and cap must be positive")
        self.base_s = base_s
        self.max_s = max_s
        self.rng = rng or random.Random()
        self.retry_after_cap_s = retry_after_cap_s

    def window(self, attempt: int) -> float:
        """Upper bound of the jitter window after failed attempt number `attempt` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 60)  # 2**60 is already far past any cap
        return min(self.max_s, self.base_s * 2.0**exponent)

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt `attempt`; the server's request wins when given."""
        if retry_after_s is not None:
            return min(max(0.0, retry_after_s), self.retry_after_cap_s)
        return self.rng.uniform(0.0, self.window(attempt))
