"""Simulates the teacher limiter's AIMD window (the real `RateLimiter`) under random 429s and under a
server that answers 429 above a fixed concurrency. No network, no clock: one reply at a time.

    .venv/bin/python bench/sim_aimd.py

Prints the mean allowed concurrency as a share of `max_in_flight` (random 429s) or in requests (a
server of capacity C). docs/teacher-client.md quotes the output.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque

from instructflow.config import Limits
from instructflow.instructors.teacher.limits import RateLimiter


async def mean_window(p_random: float, capacity: int | None, max_in_flight: int, replies: int = 50_000,
                      seed: int = 1, **limits: float) -> float:
    rng = random.Random(seed)
    lim = RateLimiter(Limits(max_in_flight=max_in_flight, **limits))
    flight: deque[bool] = deque()  # per request in flight: will it be answered 429?
    total = 0
    for _ in range(replies):
        while lim.try_acquire(1):
            over = capacity is not None and lim.in_flight > capacity
            flight.append(over or rng.random() < p_random)
        rng.shuffle(flight)  # replies come back in no particular order
        limited = flight.popleft()
        outcome = "rate_limited" if limited else "ok"
        await lim.release(outcome=outcome, model="m", prompt_tokens=0, completion_tokens=0)
        lim.paused_until = 0.0  # time is not simulated: a pause would only shift the run
        total += lim.allowed
    return total / replies


async def main() -> None:
    for share in (0.2, 0.35, 0.5):
        print(f"rate_limited_share={share}")
        for window in (10, 50):
            mean = await mean_window(0.2, None, window, rate_limited_share=share)
            print(f"  20% random 429s, max_in_flight {window}: mean window {mean / window:.2f} of the maximum")
        for capacity, window in ((8, 50), (20, 64)):
            mean = await mean_window(0.0, capacity, window, rate_limited_share=share)
            print(f"  server capacity {capacity}, max_in_flight {window}: mean window {mean:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
