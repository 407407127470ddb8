"""The rate limiter and budget of one teacher endpoint (Ray-free core of `actors.limiter`).

Every request to the teacher goes `acquire(est_tokens)` -> HTTP call -> `release(...)`. Between the
two calls the request is "in flight". The limiter admits a request only when all of these agree:

- the budget is not spent (otherwise `acquire` raises `BudgetExhausted`; in-flight requests finish,
  so the overshoot is bounded by what was already in flight),
- no group pause is in force (a server's Retry-After pauses every caller, not just one request),
- the requests-per-minute and tokens-per-minute buckets have room,
- fewer requests are in flight than the AIMD window allows. Each success adds 1/window, so the
  window grows by about one per window-full of successes, up to `Limits.max_in_flight`. 429s are
  judged per round (a window-full of replies, at least `Limits.round_min_replies`): only when more
  than `Limits.rate_limited_share` of a round's replies are 429s is the server taken to be over
  capacity; then the window halves, once for that round, and the largest Retry-After of the round
  pauses every caller. A 429 below that share is noise (providers answer some 429s at random): only
  the request that got it waits its Retry-After and tries again, and nobody else slows down.

Why a share and not every 429: under 20 % random 429s, halving once per round trip settles the
window near 3 (each round of 10 almost surely holds a 429), a third of the throughput. A server that
really answers 429 above a fixed concurrency C keeps the share above the tolerance whenever the
window exceeds about 1.5 C, so the window still settles near C (docs/teacher-client.md has the
simulation and the measured runs).

Waiting callers queue in FIFO order behind one "head" caller, so a wake-up costs O(1), not O(waiters).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from instructflow.instructors.teacher.api import BudgetExhausted
from instructflow.instructors.teacher.retry import Clock

OUTCOMES = frozenset({"ok", "rate_limited", "server_error", "timeout", "connection", "client_error", "cancelled"})


class TokenBucket:
    """A bucket refilled continuously at `per_minute / 60` units per second, holding at most
    `capacity`. `take` may drive the level below zero (debt), which later callers wait out; this is
    how a request that used more tokens than it reserved is charged after the fact."""

    def __init__(self, per_minute: float, clock: Clock, burst_s: float = 10.0) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.clock = clock
        self.level = self.capacity
        self._stamp = clock.monotonic()

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_s(self, amount: float) -> float:
        """Seconds until `amount` (cut to the capacity, so huge requests can still pass) is available."""
        self._refill()
        missing = min(amount, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount


class RateLimiter:
    """Admission control for one (base_url, model): buckets, AIMD concurrency, group pause, budget.

    Args:
        limits: `config.Limits` (any object with its attributes).
        budget: `config.Budget` or None for no budget.
        clock: time source; `ManualClock` in tests.
    """

    def __init__(self, limits: Any, budget: Any = None, *, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.max_in_flight = int(limits.max_in_flight)
        self.min_in_flight = max(1, min(int(limits.min_in_flight), self.max_in_flight))
        self.window = float(self.max_in_flight)  # the AIMD window; floor() is the admitted concurrency
        self.tolerated_share = float(getattr(limits, "rate_limited_share", 0.35))
        self.round_min = int(getattr(limits, "round_min_replies", 20))
        self._round_seen = 0  # replies (ok or 429) judged in the current round
        self._round_limited = 0  # of which 429s
        self._round_retry_after = 0.0  # the largest Retry-After of the round's 429s
        self.decreases = 0
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        self.requests = TokenBucket(rpm, self.clock) if rpm else None
        self.tokens = TokenBucket(tpm, self.clock) if tpm else None
        self.max_tokens_total = getattr(budget, "max_tokens_total", None)
        self.max_cost_usd = getattr(budget, "max_cost_usd", None)
        self.prices: dict[str, Any] = dict(getattr(budget, "prices", None) or {})
        self.in_flight = 0
        self.reserved = 0.0  # estimated tokens of the requests in flight
        self.spent_tokens = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.spent_usd = 0.0
        self.unpriced_tokens = 0  # tokens of models without a price, charged at the highest price
        self.paused_until = 0.0
        self.outcomes: Counter[str] = Counter()
        self.waiting = 0
        self.unmatched_releases = 0
        self._drain = 0  # releases still due from requests that were in flight at the last decrease
        self._turn = asyncio.Lock()  # FIFO: only the head waiter checks the conditions
        self._changed = asyncio.Event()

    # -- admission -------------------------------------------------------------------------------
    @property
    def allowed(self) -> int:
        """Requests allowed in flight now (the AIMD window, rounded down)."""
        return max(self.min_in_flight, int(self.window))

    async def acquire(self, est_tokens: int) -> None:
        """Waits until one request of about `est_tokens` tokens may start, then counts it in flight.

        Raises:
            BudgetExhausted: the token or cost budget is spent; no new request may start.
        """
        est = max(0, int(est_tokens))
        self.waiting += 1
        try:
            async with self._turn:
                await self._wait_for_room(est)
        finally:
            self.waiting -= 1
        self._admit(est)

    def try_acquire(self, est_tokens: int) -> bool:
        """Counts one request in flight if it may start right now, without waiting or jumping the
        queue (False while anyone waits). Never raises: a spent budget is simply False here, and
        `acquire` reports it."""
        est = max(0, int(est_tokens))
        if self.waiting or self._turn.locked() or self._spent_message() is not None:
            return False
        if self._time_wait(est) > 0 or not self._has_room(est):
            return False
        self._admit(est)
        return True

    def _admit(self, est: int) -> None:
        if self.requests:
            self.requests.take(1)
        if self.tokens:
            self.tokens.take(est)
        self.in_flight += 1
        self.reserved += est

    async def _wait_for_room(self, est: int) -> None:
        while True:
            self._raise_if_spent()
            delay = self._time_wait(est)
            if delay > 0:
                await self.clock.sleep(delay)
                continue
            if self._has_room(est):
                return
            self._changed.clear()
            await self._changed.wait()  # set by release(), abandon() and a growing window

    def _time_wait(self, est: int) -> float:
        waits = [self.paused_until - self.clock.monotonic()]
        if self.requests:
            waits.append(self.requests.wait_s(1))
        if self.tokens:
            waits.append(self.tokens.wait_s(est))
        return max(waits)

    def _budget_crowded(self, est: int) -> bool:
        """True while the requests already in flight may use up what is left of the budget: then
        wait for them instead of starting another one that would overshoot."""
        if self.in_flight == 0:
            return False  # one request may always run, so the overshoot is at most one request
        if self.max_tokens_total is not None and self.spent_tokens + self.reserved + est > self.max_tokens_total:
            return True
        if self.max_cost_usd is not None:
            worst = (self.reserved + est) * self._highest_price() / 1000.0
            return self.spent_usd + worst > self.max_cost_usd
        return False

    def _has_room(self, est: int) -> bool:
        return self.in_flight < self.allowed and not self._budget_crowded(est)

    def _spent_message(self) -> str | None:
        """Why no request may start any more (the budget is spent), or None."""
        if self.max_tokens_total is not None and self.spent_tokens >= self.max_tokens_total:
            return (
                f"token budget spent: {self.spent_tokens} of {self.max_tokens_total} tokens "
                "(teacher.budget.max_tokens_total)"
            )
        if self.max_cost_usd is not None and self.spent_usd >= self.max_cost_usd:
            return (
                f"cost budget spent: ${self.spent_usd:.4f} of ${self.max_cost_usd:.4f} "
                "(teacher.budget.max_cost_usd)"
            )
        return None

    def _raise_if_spent(self) -> None:
        message = self._spent_message()
        if message is not None:
            raise BudgetExhausted(message)

    # -- completion ------------------------------------------------------------------------------
    async def release(
        self,
        *,
        outcome: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        retry_after_s: float | None = None,
        price_factor: float = 1.0,
    ) -> None:
        """Ends one in-flight request: charges its tokens, adapts the window, applies a pause.

        Args:
            outcome: "ok", "rate_limited", "server_error", "timeout", "connection", "client_error"
                (or "cancelled" for a request abandoned by its caller).
            model: the model that answered (selects the price).
            prompt_tokens / completion_tokens: what the server charged (0 when it charged nothing).
            retry_after_s: a server-requested wait; pauses every caller of this limiter.
            price_factor: share of the model's price these tokens cost (0.5 for Batch API lines).
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
        self.outcomes[outcome] += 1
        in_round = self._drain > 0  # a request of a round that has already been penalised
        est = self._end_in_flight()
        used = max(0, int(prompt_tokens)) + max(0, int(completion_tokens))
        if self.tokens:
            self.tokens.take(used - est)  # refund or charge the difference from the estimate
        self.add_spent(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, model=model, price_factor=price_factor
        )
        if outcome == "ok":
            self.window = min(float(self.max_in_flight), self.window + 1.0 / max(self.window, 1.0))
        if outcome in ("ok", "rate_limited") and not in_round:
            self._judge_round(outcome == "rate_limited", retry_after_s)
        self._changed.set()

    def _judge_round(self, limited: bool, retry_after_s: float | None) -> None:
        """Counts one reply into the current round and decides the round as soon as its outcome is
        certain: over capacity once its 429s exceed the tolerated share of the round's full size,
        healthy once the round is full without that."""
        self._round_seen += 1
        if limited:
            self._round_limited += 1
            self._round_retry_after = max(self._round_retry_after, retry_after_s or 0.0)
        size = max(self.allowed, self.round_min)
        if self._round_limited > self.tolerated_share * size:
            self._decrease()
            if self._round_retry_after > 0:
                self.paused_until = max(self.paused_until, self.clock.monotonic() + self._round_retry_after)
            self._new_round()
        elif self._round_seen >= size:
            self._new_round()

    def _new_round(self) -> None:
        self._round_seen = self._round_limited = 0
        self._round_retry_after = 0.0

    def _end_in_flight(self) -> float:
        """Takes one request out of flight; returns its share of the reserved estimate."""
        if self.in_flight <= 0:
            # A release with no acquire: the gate restarted while requests were in flight. Their
            # tokens still count; there is no slot to free.
            self.unmatched_releases += 1
            return 0.0
        # Calls carry no ticket, so each release gives back the mean reservation; the sum is exact
        # once nothing is in flight.
        share = self.reserved / self.in_flight
        self.in_flight -= 1
        self.reserved = 0.0 if self.in_flight == 0 else self.reserved - share
        if self._drain:
            self._drain -= 1
        return share

    def _decrease(self) -> None:
        # Many requests in flight see the same overload; halve once per round trip, not per 429:
        # the requests still in flight now belong to the round that was just penalised.
        self.window = max(float(self.min_in_flight), self.window / 2.0)
        self._drain = self.in_flight
        self.decreases += 1

    def add_spent(
        self, *, prompt_tokens: int = 0, completion_tokens: int = 0, model: str = "", price_factor: float = 1.0
    ) -> None:
        """Charges tokens to the budget without a request (e.g. usage already spent before a
        restart or resume); `price_factor` scales their price (Batch API lines cost half)."""
        prompt, completion = max(0, int(prompt_tokens)), max(0, int(completion_tokens))
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.spent_tokens += prompt + completion
        if self.prices and prompt + completion:
            price = self._price(model)
            if price is None:
                self.unpriced_tokens += prompt + completion
                self.spent_usd += (prompt + completion) * self._highest_price() * price_factor / 1000.0
            else:
                cost = prompt * price.prompt_per_1k + completion * price.completion_per_1k
                self.spent_usd += cost * price_factor / 1000.0
        self._changed.set()

    def _price(self, model: str) -> Any | None:
        """The price of `model`, or of the longest priced name it starts with (servers often answer
        with a dated name such as gpt-4o-mini-2024-07-18)."""
        if model in self.prices:
            return self.prices[model]
        matches = [name for name in self.prices if model.startswith(name)]
        return self.prices[max(matches, key=len)] if matches else None

    def _highest_price(self) -> float:
        return max(
            (max(p.prompt_per_1k, p.completion_per_1k) for p in self.prices.values()), default=0.0
        )

    # -- reporting -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Plain-data state for metrics and the run summary."""
        now = self.clock.monotonic()
        tokens_left = None if self.max_tokens_total is None else max(0, self.max_tokens_total - self.spent_tokens)
        usd_left = None if self.max_cost_usd is None else max(0.0, self.max_cost_usd - self.spent_usd)
        return {
            "allowed_in_flight": self.allowed,
            "window": round(self.window, 3),
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "tokens_spent": self.spent_tokens,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_spent_usd": round(self.spent_usd, 6),
            "unpriced_tokens": self.unpriced_tokens,
            "budget_tokens_left": tokens_left,
            "budget_usd_left": None if usd_left is None else round(usd_left, 6),
            "budget_exhausted": tokens_left == 0 or (usd_left is not None and usd_left <= 0),
            "paused_until": self.paused_until if self.paused_until > now else None,
            "pause_left_s": max(0.0, self.paused_until - now),
            "outcomes": dict(self.outcomes),
            "window_decreases": self.decreases,
            "unmatched_releases": self.unmatched_releases,
        }

