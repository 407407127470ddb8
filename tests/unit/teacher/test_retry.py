"""Retry headers and full-jitter back-off."""

from __future__ import annotations

import asyncio
import random
from email.utils import formatdate

import pytest

from instructflow.instructors.teacher.retry import (
    Backoff,
    ManualClock,
    parse_retry_after,
    parse_should_retry,
    retry_hint,
)

NOW = 1_800_000_000.0


def test_retry_after_ms_is_milliseconds_and_wins_over_seconds() -> None:
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"Retry-After-Ms": "250", "Retry-After": "9"}) == 0.25


def test_retry_after_seconds_accepts_fractions_and_any_case() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25


def test_retry_after_http_date_is_measured_from_now() -> None:
    headers = {"Retry-After": formatdate(NOW + 7, usegmt=True)}
    assert parse_retry_after(headers, now=NOW) == pytest.approx(7.0)
    past = {"Retry-After": formatdate(NOW - 60, usegmt=True)}
    assert parse_retry_after(past, now=NOW) == 0.0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Retry-After": "soon"}, {"Retry-After": "-4"}, {"retry-after-ms": "nan"}, {"Retry-After": ""}],
)
def test_unusable_retry_after_is_none(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, now=NOW) is None


def test_bad_ms_header_falls_back_to_seconds() -> None:
    assert parse_retry_after({"retry-after-ms": "x", "Retry-After": "2"}) == 2.0


def test_should_retry_header() -> None:
    assert parse_should_retry({"x-should-retry": "false"}) is False
    assert parse_should_retry({"X-Should-Retry": "TRUE"}) is True
    assert parse_should_retry({"x-should-retry": "maybe"}) is None
    assert retry_hint({"retry-after-ms": "10", "x-should-retry": "true"}) == retry_hint(
        {"retry-after-ms": "10.0", "x-should-retry": "true"}
    )


def test_full_jitter_window_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(1))
    assert [backoff.window(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.window(10_000) == 4.0  # no overflow on absurd attempt numbers


def test_jittered_delays_stay_in_their_window_and_spread_out() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(2))
    delays = [backoff.delay(3) for _ in range(500)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert min(delays) < 0.5 and max(delays) > 3.5  # full jitter uses the whole window


def test_jitter_is_reproducible_with_a_seed() -> None:
    first = [Backoff(0.5, 30, random.Random(9)).delay(n) for n in range(1, 6)]
    second = [Backoff(0.5, 30, random.Random(9)).delay(n) for n in range(1, 6)]
    assert first == second


def test_server_delay_is_honoured_exactly_but_capped() -> None:
    backoff = Backoff(0.5, 1.0, random.Random(0), retry_after_cap_s=60)
    assert backoff.delay(1, retry_after_s=12.5) == 12.5  # beyond max_s: the server knows best
    assert backoff.delay(1, retry_after_s=3600) == 60
    assert backoff.delay(1, retry_after_s=0.0) == 0.0


def test_manual_clock_records_and_advances() -> None:
    clock = ManualClock(start=10.0, wall=NOW)

    async def nap() -> None:
        await clock.sleep(1.5)
        await clock.sleep(0.5)

    asyncio.run(nap())
    assert clock.sleeps == [1.5, 0.5]
    assert clock.monotonic() == 12.0 and clock.time() == NOW + 2.0
