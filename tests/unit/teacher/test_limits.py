"""The Ray-free limiter: AIMD window, group pause, RPM/TPM buckets and the budget."""

from __future__ import annotations

import asyncio

import pytest

from instructflow.config import Budget, Limits, Price
from instructflow.instructors.teacher.api import BudgetExhausted
from instructflow.instructors.teacher.limits import RateLimiter
from instructflow.instructors.teacher.retry import ManualClock


def ok(tokens: int = 0) -> dict:
    return {"outcome": "ok", "model": "m", "prompt_tokens": tokens, "completion_tokens": 0}


def limited(retry_after_s: float | None = None) -> dict:
    return {"outcome": "rate_limited", "model": "m", "prompt_tokens": 0, "completion_tokens": 0, "retry_after_s": retry_after_s}


async def yield_many(times: int = 20) -> None:
    """Lets every ready task run (no wall-clock waiting)."""
    for _ in range(times):
        await asyncio.sleep(0)


def test_in_flight_cap_blocks_until_a_release() -> None:
    async def scenario() -> None:
        lim = RateLimiter(Limits(max_in_flight=2))
        await lim.acquire(1)
        await lim.acquire(1)
        third = asyncio.create_task(lim.acquire(1))
        await yield_many()
        assert not third.done() and lim.snapshot()["waiting"] == 1
        await lim.release(**ok())
        await asyncio.wait_for(third, 2)
        assert lim.in_flight == 2

    asyncio.run(scenario())


def test_try_acquire_admits_only_what_may_start_now_and_never_jumps_the_queue() -> None:
    async def scenario() -> None:
        lim = RateLimiter(Limits(max_in_flight=2), Budget(max_tokens_total=100))
        assert lim.try_acquire(10) and lim.try_acquire(10)
        assert not lim.try_acquire(10) and lim.in_flight == 2  # the cap
        waiter = asyncio.create_task(lim.acquire(10))
        await yield_many()
        await lim.release(**ok(30))  # a slot frees, but the waiter came first
        assert not lim.try_acquire(10)
        await asyncio.wait_for(waiter, 2)
        await lim.release(**ok(30))
        await lim.release(**ok(50))  # 110 of 100 tokens spent
        assert not lim.try_acquire(10) and lim.in_flight == 0  # spent: False, not an exception
        with pytest.raises(BudgetExhausted):
            await lim.acquire(10)

    asyncio.run(scenario())


def test_aimd_window_halves_once_per_round_in_a_429_storm() -> None:
    async def scenario() -> list[int]:
        lim = RateLimiter(Limits(max_in_flight=16, min_in_flight=1, round_min_replies=4))
        seen = []
        for _ in range(6):  # each round: fill the window, every request gets a 429
            n = lim.allowed
            for _ in range(n):
                await lim.acquire(1)
            for _ in range(n):
                await lim.release(**limited())
            seen.append(lim.allowed)
        return seen

    # 16 requests all answered 429 halve the window once, not 16 times; below the round's minimum
    # size (4 replies) a round needs more than a third of 4 replies to be 429s.
    assert asyncio.run(scenario()) == [8, 4, 2, 1, 1, 1]


def _random_429_rounds(share: float, rounds: int, window: int) -> RateLimiter:
    """Runs `rounds` full windows in which every 1/share-th reply (spread evenly) is a 429."""

    async def scenario() -> RateLimiter:
        lim = RateLimiter(Limits(max_in_flight=window))
        period = round(1 / share)
        count = 0
        for _ in range(rounds):
            n = lim.allowed
            for _ in range(n):
                await lim.acquire(1)
            for _ in range(n):
                count += 1
                await lim.release(**(limited(1.0) if count % period == 0 else ok()))
        return lim

    return asyncio.run(scenario())


def test_random_429s_below_the_tolerated_share_neither_shrink_the_window_nor_pause_anyone() -> None:
    lim = _random_429_rounds(share=0.2, rounds=30, window=10)
    snap = lim.snapshot()
    assert snap["outcomes"]["rate_limited"] >= 50  # a fifth of 300 replies were 429s ...
    assert lim.allowed == 10 and snap["window_decreases"] == 0  # ... and the window stayed whole
    assert snap["paused_until"] is None and lim.paused_until == 0.0  # only the 429's own request waits


def test_429s_above_the_tolerated_share_halve_the_window_and_pause_the_group() -> None:
    lim = _random_429_rounds(share=0.5, rounds=3, window=16)
    assert lim.snapshot()["window_decreases"] >= 1 and lim.allowed < 16
    assert lim.paused_until > 0  # a server over capacity pauses every caller for its Retry-After


def test_aimd_floor_is_min_in_flight() -> None:
    async def scenario() -> int:
        lim = RateLimiter(Limits(max_in_flight=32, min_in_flight=4))
        for _ in range(60):
            await lim.acquire(1)
            await lim.release(**limited())
        return lim.allowed

    assert asyncio.run(scenario()) == 4


def test_aimd_recovers_about_one_per_window_of_successes() -> None:
    async def scenario() -> list[tuple[int, int]]:
        lim = RateLimiter(Limits(max_in_flight=8, min_in_flight=1, round_min_replies=1))
        for _ in range(20):
            await lim.acquire(1)
            await lim.release(**limited())
        assert lim.allowed == 1
        steps, successes, last = [], 0, lim.allowed
        while lim.allowed < 8:
            await lim.acquire(1)
            await lim.release(**ok())
            successes += 1
            if lim.allowed != last:
                steps.append((lim.allowed, successes))
                last = lim.allowed
            assert successes < 200, "window never recovered"
        await lim.acquire(1)
        await lim.release(**ok())
        assert lim.allowed == 8  # never above max_in_flight
        return steps

    steps = asyncio.run(scenario())
    assert [w for w, _ in steps] == [2, 3, 4, 5, 6, 7, 8]
    # Growing from w to w+1 takes about w successes: 1 + 2 + ... + 7 = 28 in all.
    assert 25 <= steps[-1][1] <= 31


def test_retry_after_of_an_overloaded_server_pauses_every_caller_in_virtual_time() -> None:
    async def scenario() -> ManualClock:
        clock = ManualClock()
        lim = RateLimiter(Limits(max_in_flight=8, round_min_replies=1, rate_limited_share=0.1), clock=clock)
        await lim.acquire(1)
        await lim.release(**limited(retry_after_s=5.0))
        assert lim.snapshot()["pause_left_s"] == 5.0
        await asyncio.gather(*(lim.acquire(1) for _ in range(3)))
        return clock

    clock = asyncio.run(scenario())
    # One caller waits out the pause; the others queue behind it instead of sleeping 5 s each.
    assert clock.sleeps == [5.0]


def test_group_pause_holds_concurrent_callers_in_real_time(recording_clock) -> None:
    async def scenario() -> tuple[float, list[float]]:
        lim = RateLimiter(Limits(max_in_flight=8, round_min_replies=1, rate_limited_share=0.1), clock=recording_clock)
        await lim.acquire(1)
        await lim.release(**limited(retry_after_s=0.3))
        paused_until = lim.paused_until

        async def admitted_at() -> float:
            await lim.acquire(1)
            return recording_clock.monotonic()

        return paused_until, await asyncio.gather(*(admitted_at() for _ in range(4)))

    paused_until, admitted = asyncio.run(scenario())
    # Every caller is admitted after the pause, on the limiter's own clock; the first one waited it
    # out and the others queued behind it (at most one sleep, however fast this machine is).
    assert len(admitted) == 4 and all(t >= paused_until for t in admitted), (paused_until, admitted)
    assert len(recording_clock.sleeps) <= 1 and all(0 < s <= 0.3 for s in recording_clock.sleeps)


def test_requests_per_minute_bucket() -> None:
    async def scenario() -> ManualClock:
        clock = ManualClock()
        lim = RateLimiter(Limits(requests_per_minute=60, max_in_flight=100), clock=clock)
        for _ in range(10):  # the bucket holds 10 s worth: a burst of 10 passes at once
            await lim.acquire(0)
        assert clock.sleeps == []
        for _ in range(5):  # then one request per second
            await lim.acquire(0)
        return clock

    clock = asyncio.run(scenario())
    assert sum(clock.sleeps) == pytest.approx(5.0)


def test_tokens_per_minute_bucket_charges_actual_usage() -> None:
    async def scenario() -> ManualClock:
        clock = ManualClock()
        lim = RateLimiter(Limits(tokens_per_minute=600, max_in_flight=100), clock=clock)  # 10 tokens/s
        await lim.acquire(100)  # the whole burst
        await lim.release(**ok(tokens=300))  # used 200 more than reserved: a debt of 200
        await lim.acquire(50)  # waits for 200 + 50 tokens to refill: 25 s
        return clock

    clock = asyncio.run(scenario())
    assert sum(clock.sleeps) == pytest.approx(25.0)


def test_token_budget_stops_new_requests() -> None:
    async def scenario() -> RateLimiter:
        lim = RateLimiter(Limits(), Budget(max_tokens_total=100))
        await lim.acquire(10)
        await lim.release(**ok(tokens=60))
        await lim.acquire(10)
        await lim.release(**ok(tokens=60))
        with pytest.raises(BudgetExhausted, match="max_tokens_total"):
            await lim.acquire(10)
        return lim

    snap = asyncio.run(scenario()).snapshot()
    assert snap["tokens_spent"] == 120 and snap["budget_tokens_left"] == 0 and snap["budget_exhausted"]


def test_a_new_request_waits_while_in_flight_ones_may_spend_the_rest() -> None:
    async def scenario() -> None:
        lim = RateLimiter(Limits(max_in_flight=10), Budget(max_tokens_total=100))
        await lim.acquire(60)
        waiting = asyncio.create_task(lim.acquire(60))  # 60 + 60 > 100: wait for the first
        await yield_many()
        assert not waiting.done()
        await lim.release(**ok(tokens=30))  # the first used only 30: room for another
        await asyncio.wait_for(waiting, 2)
        await lim.release(**ok(tokens=80))  # 110 spent
        with pytest.raises(BudgetExhausted):
            await lim.acquire(1)

    asyncio.run(scenario())


def test_cost_budget_with_prices_and_dated_model_names() -> None:
    prices = {"gpt-4o-mini": Price(prompt_per_1k=1.0, completion_per_1k=2.0), "big": Price(prompt_per_1k=10.0)}
    budget = Budget(max_cost_usd=0.05, prices=prices)

    async def scenario() -> RateLimiter:
        lim = RateLimiter(Limits(), budget)
        await lim.acquire(1)
        # A dated name is priced by its longest priced prefix: (10 * $1 + 10 * $2) / 1000.
        await lim.release(outcome="ok", model="gpt-4o-mini-2024-07-18", prompt_tokens=10, completion_tokens=10)
        assert lim.spent_usd == pytest.approx(0.03)
        await lim.acquire(1)
        # An unpriced model is charged at the highest known price ($10 per 1k), never for free.
        await lim.release(outcome="ok", model="mystery", prompt_tokens=5, completion_tokens=0)
        with pytest.raises(BudgetExhausted, match="max_cost_usd"):
            await lim.acquire(1)
        return lim

    snap = asyncio.run(scenario()).snapshot()
    assert snap["cost_spent_usd"] == pytest.approx(0.08)
    assert snap["unpriced_tokens"] == 5


def test_release_checks_its_outcome_and_survives_a_lost_acquire() -> None:
    async def scenario() -> dict:
        lim = RateLimiter(Limits(), Budget(max_tokens_total=100))
        await lim.release(**ok(tokens=40))  # e.g. the gate restarted and forgot the acquire
        await lim.acquire(1)
        with pytest.raises(ValueError, match="unknown outcome"):
            await lim.release(outcome="teapot", model="m", prompt_tokens=0, completion_tokens=0)
        return lim.snapshot()

    snap = asyncio.run(scenario())
    assert snap["unmatched_releases"] == 1 and snap["tokens_spent"] == 40 and snap["in_flight"] == 1


def test_snapshot_reports_counts_and_state() -> None:
    async def scenario() -> dict:
        lim = RateLimiter(Limits(max_in_flight=4), Budget(max_tokens_total=1000))
        await lim.acquire(5)
        await lim.release(**ok(tokens=7))
        await lim.acquire(5)
        await lim.release(outcome="timeout", model="m", prompt_tokens=0, completion_tokens=0)
        await lim.acquire(5)
        return lim.snapshot()

    snap = asyncio.run(scenario())
    assert snap["outcomes"] == {"ok": 1, "timeout": 1}
    assert snap["in_flight"] == 1 and snap["allowed_in_flight"] == 4
    assert snap["budget_tokens_left"] == 993 and snap["budget_usd_left"] is None
    assert snap["paused_until"] is None
