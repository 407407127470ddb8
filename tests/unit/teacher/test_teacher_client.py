"""TeacherClient against the real stub HTTP server: retries, headers, faults, budget, secrets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from instructflow.config import Budget, Limits
from instructflow.instructors.teacher.api import (
    BudgetExhausted,
    FatalTeacherError,
    Reply,
    RequestFailed,
)
from instructflow.instructors.teacher.client import TeacherClient
from instructflow.instructors.teacher.limits import RateLimiter
from instructflow.instructors.teacher.retry import ManualClock
from instructflow.instructors.teacher.stub import StubTeacher

ASK = [{"role": "user", "content": "Write three trivia questions about tides."}]


def ask(client: TeacherClient, category: str = "trivia", call: str = "generate", **kw: Any) -> Reply:
    async def go() -> Reply:
        try:
            return await client.chat(ASK, category=category, call=call, **kw)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_reply_follows_the_category_and_counts_usage(stub: StubTeacher, make_config) -> None:
    client = TeacherClient(make_config(), base_url=stub.base_url)
    reply = ask(client, "trivia")
    assert reply.text.startswith("QUESTION:") and "ANSWER:" in reply.text  # the headers reached the stub
    assert reply.attempts == 1 and not reply.tokens_estimated
    assert reply.model == "stub-model"
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert stub.stats()["completion_tokens"] == reply.completion_tokens
    usage = client.stats().usage
    assert usage["by_category"]["trivia"]["replies"] == 1


def test_plain_completions_endpoint(stub: StubTeacher, make_config) -> None:
    client = TeacherClient(make_config(), base_url=stub.base_url)

    async def go() -> Reply:
        return await client.complete("Once upon a time", category="general", call="respond", max_tokens=50)

    reply = asyncio.run(go())
    assert reply.text and reply.completion_tokens > 0


@pytest.mark.parametrize(
    ("fmt", "retry_after", "low", "high"),
    [("seconds", 2.5, 2.5, 2.5), ("ms", 1.234, 1.234, 1.234), ("date", 3.0, 1.9, 3.0)],
)
def test_backoff_follows_the_servers_retry_after(
    stub: StubTeacher, make_config, fmt: str, retry_after: float, low: float, high: float
) -> None:
    stub.set_faults(fail_first_n=1, fail_first_status=429, retry_after_s=retry_after, retry_after_format=fmt)
    clock = ManualClock()
    client = TeacherClient(make_config(backoff_max_s=0.05), base_url=stub.base_url, clock=clock)
    reply = ask(client)
    assert reply.attempts == 2
    # One wait, of what the server asked for, far beyond the client's own 0.05 s cap.
    assert len(clock.sleeps) == 1
    assert low <= clock.sleeps[0] <= high
    assert client.limiter.snapshot()["outcomes"] == {"rate_limited": 1, "ok": 1}


def test_retry_after_is_waited_out_on_the_real_clock(stub: StubTeacher, make_config, recording_clock) -> None:
    stub.set_faults(fail_first_n=2, fail_first_status=429, retry_after_s=0.2)
    client = TeacherClient(make_config(backoff_base_s=30, backoff_max_s=30), base_url=stub.base_url,
                           clock=recording_clock)
    reply = ask(client)
    assert reply.attempts == 3 and stub.stats()["by_status"] == {"200": 1, "429": 2}
    # Two waits of 0.2 s, not draws from the 30 s jitter window; the group pause that each 429 set
    # is over by then, so it adds no wait of its own.
    assert recording_clock.sleeps == [pytest.approx(0.2), pytest.approx(0.2)]


def test_gives_up_after_max_attempts_with_jittered_waits(stub: StubTeacher, make_config) -> None:
    stub.set_faults(p_500=1.0)
    clock = ManualClock()
    client = TeacherClient(make_config(max_attempts=5, backoff_base_s=1, backoff_max_s=3), base_url=stub.base_url, clock=clock)
    with pytest.raises(RequestFailed) as failed:
        ask(client)
    assert failed.value.reason == "server_error" and "after 5 attempt(s)" in failed.value.detail
    assert stub.stats()["requests"] == 5
    windows = [1, 2, 3, 3]
    assert len(clock.sleeps) == 4 and all(0 <= d <= w for d, w in zip(clock.sleeps, windows, strict=True))
    assert client.stats().retries == 4 and client.stats().failures == {"server_error": 1}


def test_should_retry_false_stops_at_once(stub: StubTeacher, make_config) -> None:
    stub.set_faults(p_503=1.0, x_should_retry="false")
    client = TeacherClient(make_config(max_attempts=6), base_url=stub.base_url, clock=ManualClock())
    with pytest.raises(RequestFailed, match="server_error"):
        ask(client)
    assert stub.stats()["requests"] == 1


def test_401_is_fatal_names_the_variable_and_never_shows_the_key(
    stub: StubTeacher, make_config, key_env: str, secret: str
) -> None:
    stub.set_faults(require_api_key="the-right-key")
    client = TeacherClient(make_config(), base_url=stub.base_url)
    with pytest.raises(FatalTeacherError) as fatal:
        ask(client)
    message = str(fatal.value)
    assert key_env in message and "401" in message
    assert stub.stats()["requests"] == 1  # not retried
    for text in (message, repr(fatal.value), repr(client), str(client), str(client.stats())):
        assert secret not in text


def test_the_right_key_is_sent_as_bearer_token(make_config, secret: str) -> None:
    with StubTeacher(require_api_key=secret) as stub:
        reply = ask(TeacherClient(make_config(), base_url=stub.base_url))
    assert reply.text


def test_missing_key_variable_fails_before_any_request(make_config, monkeypatch, key_env: str) -> None:
    config = make_config()
    monkeypatch.delenv(key_env)
    with pytest.raises(FatalTeacherError, match=key_env):
        TeacherClient(config)


def test_embedded_teacher_needs_no_key(stub: StubTeacher, make_config, monkeypatch, key_env: str) -> None:
    monkeypatch.delenv(key_env)
    assert ask(TeacherClient(make_config(kind="embedded"), base_url=stub.base_url)).text


def test_400_and_404_fail_the_request_without_retrying(stub: StubTeacher, make_config) -> None:
    with pytest.raises(RequestFailed) as bad:
        ask(TeacherClient(make_config(model=""), base_url=stub.base_url))  # the stub wants a model
    assert bad.value.reason == "bad_request" and "model" in bad.value.detail
    with pytest.raises(RequestFailed) as missing:
        ask(TeacherClient(make_config(), base_url=stub.base_url.removesuffix("/v1")))  # wrong path
    assert missing.value.reason == "not_found" and "served at" in missing.value.detail
    assert stub.stats()["requests"] == 1  # the 404 never reached a handler, and nothing was retried


@pytest.mark.parametrize("fault", ["p_garbled", "p_truncated"])
def test_garbled_and_truncated_bodies_are_retried_then_fail(stub: StubTeacher, make_config, fault: str) -> None:
    stub.set_faults(**{fault: 1.0})
    client = TeacherClient(make_config(max_attempts=3), base_url=stub.base_url, clock=ManualClock())
    with pytest.raises(RequestFailed) as failed:
        ask(client)
    assert failed.value.reason == "garbled_reply"
    assert stub.stats()["requests"] == 3 and client.stats().requests == {"2xx": 3}


def test_a_garbled_reply_then_a_good_one(stub: StubTeacher, make_config) -> None:
    stub.set_faults(p_garbled=0.5)  # seed 7: some of the first requests are garbled
    client = TeacherClient(make_config(max_attempts=10), base_url=stub.base_url, clock=ManualClock())

    async def many() -> list[Reply]:
        return [await client.chat(ASK, category="trivia", call="generate") for _ in range(6)]

    replies = asyncio.run(many())
    assert all(r.text.startswith("QUESTION:") for r in replies)
    assert client.stats().retries == stub.stats()["faults_injected"]["p_garbled"] > 0


def test_empty_choices_get_one_retry_then_fail(stub: StubTeacher, make_config) -> None:
    stub.set_faults(p_empty_choices=1.0)
    client = TeacherClient(make_config(max_attempts=6), base_url=stub.base_url, clock=ManualClock())
    with pytest.raises(RequestFailed) as failed:
        ask(client)
    assert failed.value.reason == "empty_reply"
    assert stub.stats()["requests"] == 2
    # The server billed the prompts of both empty replies; the ledger and the budget count them.
    assert client.stats().usage["prompt_tokens"] == client.limiter.snapshot()["prompt_tokens"] > 0


def test_missing_usage_is_estimated_and_flagged(stub: StubTeacher, make_config) -> None:
    stub.set_faults(p_missing_usage=1.0)
    client = TeacherClient(make_config(), base_url=stub.base_url)
    reply = ask(client)
    assert reply.tokens_estimated
    served = stub.stats()["completion_tokens"]  # what the stub would have reported (words * 1.3)
    assert 0.5 * served <= reply.completion_tokens <= 2 * served
    assert client.stats().usage["estimated_replies"] == 1


def test_hung_request_times_out_and_the_server_lets_go(stub: StubTeacher, make_config) -> None:
    stub.set_faults(p_hang=1.0)
    clock = ManualClock()
    client = TeacherClient(make_config(timeout_s=0.3, max_attempts=2), base_url=stub.base_url, clock=clock)
    with pytest.raises(RequestFailed) as failed:
        ask(client)
    assert failed.value.reason == "timeout" and "after 2 attempt(s)" in failed.value.detail
    # Each attempt hung and was given up by the client: two requests, one back-off between them.
    assert stub.stats()["requests"] == 2 and stub.stats()["faults_injected"] == {"p_hang": 2}
    assert len(clock.sleeps) == 1 and client.stats().failures == {"timeout": 1}
    deadline = time.monotonic() + 5
    while stub.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stub.stats()["in_flight"] == 0, "the stub kept hung handlers after the client gave up"


def test_observer_sees_every_attempt(stub: StubTeacher, make_config) -> None:
    stub.set_faults(fail_first_n=1, fail_first_status=429, retry_after_s=0.01)
    events: list[dict] = []

    def broken_observer(event: dict) -> None:
        events.append(event)
        raise RuntimeError("metrics are down")  # must not break the request

    reply = ask(TeacherClient(make_config(), base_url=stub.base_url, observer=broken_observer))
    assert [e["status_class"] for e in events] == ["429", "2xx"]
    assert events[1]["completion_tokens"] == reply.completion_tokens
    assert events[0]["reason"] == "rate_limited" and events[1]["category"] == "trivia"
    assert all(e["latency_s"] >= 0 for e in events)


def test_a_lone_429_delays_only_its_own_request(stub: StubTeacher, make_config) -> None:
    stub.set_faults(fail_first_n=1, fail_first_status=429, retry_after_s=30)
    clock = ManualClock()
    limiter = RateLimiter(Limits(max_in_flight=8), clock=clock)
    client = TeacherClient(make_config(), limiter, base_url=stub.base_url, clock=clock)
    ask(client)
    snap = limiter.snapshot()
    assert clock.sleeps == [30]  # the request waited the server's Retry-After, then succeeded
    assert snap["outcomes"] == {"rate_limited": 1, "ok": 1}
    assert snap["allowed_in_flight"] == 8 and snap["paused_until"] is None  # nobody else slowed down


def test_429s_over_the_tolerated_share_pause_the_group_and_halve_the_window(stub: StubTeacher, make_config) -> None:
    stub.set_faults(fail_first_n=1, fail_first_status=429, retry_after_s=30)
    clock = ManualClock()
    # One 429 in a round of 8 is over a 10 % tolerance: the server counts as over capacity.
    limiter = RateLimiter(Limits(max_in_flight=8, rate_limited_share=0.1, round_min_replies=1), clock=clock)
    client = TeacherClient(make_config(), limiter, base_url=stub.base_url, clock=clock)
    ask(client)
    snap = limiter.snapshot()
    assert clock.sleeps == [30]  # the retry waited once, the group pause did not add a second wait
    assert snap["outcomes"] == {"rate_limited": 1, "ok": 1} and snap["allowed_in_flight"] == 4


def test_budget_overshoot_is_bounded_by_the_in_flight_window(make_config) -> None:
    budget, window = 700, 8  # each reply is about 70 tokens: some 10 of the 20 fit
    with StubTeacher(seed=3, latency_s=0.05, jitter_s=0.05) as stub:
        limiter = RateLimiter(Limits(max_in_flight=window), Budget(max_tokens_total=budget))
        client = TeacherClient(make_config(max_tokens=200), limiter, base_url=stub.base_url)

        async def twenty() -> list[Any]:
            calls = [client.chat(ASK, category="trivia", call="generate") for _ in range(20)]
            return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(twenty())
    replies = [r for r in results if isinstance(r, Reply)]
    assert all(isinstance(r, Reply | BudgetExhausted) for r in results), results
    assert replies and len(replies) < 20  # the budget stopped some requests
    biggest = max(r.prompt_tokens + r.completion_tokens for r in replies)
    spent = limiter.snapshot()["tokens_spent"]
    assert spent == sum(r.prompt_tokens + r.completion_tokens for r in replies)
    assert spent <= budget + window * biggest
    assert spent - budget <= biggest  # in fact at most one reply over: in-flight estimates are reserved


def test_the_key_never_reaches_the_logs(stub: StubTeacher, make_config, secret: str, caplog) -> None:
    stub.set_faults(fail_first_n=1, fail_first_status=500)
    caplog.set_level("DEBUG")  # the SDK and HTTP library log requests at debug level
    ask(TeacherClient(make_config(), base_url=stub.base_url))
    assert caplog.records, "expected some debug logging to check"
    assert secret not in caplog.text


def test_a_cancelled_request_gives_its_slot_back(make_config) -> None:
    with StubTeacher(latency_s=30) as stub:
        limiter = RateLimiter(Limits(max_in_flight=1))
        client = TeacherClient(make_config(), limiter, base_url=stub.base_url)

        async def go() -> None:
            task = asyncio.create_task(client.chat(ASK, category="trivia", call="generate"))
            deadline = time.monotonic() + 5
            while stub.stats()["in_flight"] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert limiter.in_flight == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await client.aclose()

        asyncio.run(go())
    assert limiter.in_flight == 0 and limiter.snapshot()["outcomes"] == {"cancelled": 1}


def _storm(stub: StubTeacher, make_config, limits: Limits, requests: int, callers: int) -> tuple[RateLimiter, list[int]]:
    """`requests` calls from `callers` concurrent callers through one limiter; returns the limiter and
    the allowed concurrency seen at each admission."""
    limiter = RateLimiter(limits)
    client = TeacherClient(make_config(max_attempts=20, backoff_base_s=0.01, backoff_max_s=0.05), limiter,
                           base_url=stub.base_url)
    seen: list[int] = []

    async def caller(n: int) -> None:
        for _ in range(n):
            seen.append(limiter.allowed)
            await client.chat(ASK, category="trivia", call="respond")

    async def go() -> None:
        try:
            await asyncio.gather(*(caller(requests // callers) for _ in range(callers)))
        finally:
            await client.aclose()

    asyncio.run(go())
    return limiter, seen


def test_random_429s_from_the_stub_leave_the_window_whole(make_config) -> None:
    with StubTeacher(seed=5, latency_s=0.02, p_429=0.2, retry_after_s=0.02, retry_after_format="seconds") as stub:
        limiter, _ = _storm(stub, make_config, Limits(max_in_flight=10), requests=300, callers=10)
        limited = stub.stats()["by_status"].get("429", 0)
    assert limited >= 40  # about a fifth of the attempts were refused at random ...
    snap = limiter.snapshot()
    assert snap["window_decreases"] <= 1 and limiter.allowed >= 8  # ... and the window barely moved


def test_a_server_over_capacity_makes_the_window_settle_near_its_capacity(make_config) -> None:
    with StubTeacher(seed=5, latency_s=0.05, max_concurrency=6, retry_after_s=0.02, retry_after_format="seconds") as stub:
        limiter, seen = _storm(stub, make_config, Limits(max_in_flight=48), requests=480, callers=48)
    assert limiter.snapshot()["window_decreases"] >= 2  # from 48 down towards the server's 6
    settled = seen[len(seen) // 2 :]
    assert 3 <= sum(settled) / len(settled) <= 12, sum(settled) / len(settled)
