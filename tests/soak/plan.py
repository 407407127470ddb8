"""A soak run's plan, drawn from its seed: categories and targets, what the teacher can supply for
each, and the fault schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass

CATEGORIES = ("general", "trivia", "writing")
# Run actors any schedule may kill besides each category's instructor and answer queue
# (`<run id>/<role>`, see cluster/topology.py; the teacher limiter is named per endpoint).
STAGE_ROLES = ("novelty:0", "judge:0", "writer:0", "gate", "shard:0", "shard:1", "ledger",
               "queue:novelty", "queue:judge", "queue:writer", "teacher-limiter")


@dataclass
class Event:
    """One fault, fired once the stub teacher has served `at_requests` requests (over every CLI
    process of the run; a clock that follows the pipeline's progress whatever the machine's load)
    and `delay_s` more have passed.

    kind: "kill" (SIGKILL of the actor `role`'s process), "429" (a burst: the stub answers 429
    with probability `p_429` and `Retry-After: retry_after_s` for `duration_s`), or "job" (SIGKILL
    of the whole run, then the same command again)."""

    kind: str
    at_requests: int
    delay_s: float
    role: str = ""
    p_429: float = 0.0
    retry_after_s: float = 1.0
    duration_s: float = 0.0

    def describe(self, rows: int | None = None) -> str:
        """What was injected, and at how many committed rows."""
        what = {
            "kill": f"kill {self.role}",
            "429": f"429 burst p={self.p_429} Retry-After {self.retry_after_s} s for {self.duration_s} s",
            "job": "SIGKILL whole run + resume",
        }[self.kind]
        return what if rows is None else f"{what} @{rows} rows"


@dataclass
class Plan:
    """One run's teacher, targets and fault schedule."""

    seed: int
    targets: dict[str, int]
    batch: dict[str, int]
    supply: dict[str, str]  # category -> "plenty", "wearing" or "worn out"
    wear: dict[str, int]  # the stub's `wear` switch
    p_duplicate: float
    latency_s: float
    events: list[Event]

    @property
    def worn_out(self) -> set[str]:
        """Categories whose target the teacher can never supply."""
        return {c for c, s in self.supply.items() if s == "worn out"}

    def describe(self) -> str:
        return ", ".join(f"{c} {self.targets[c]} ({self.supply[c]})" for c in self.targets)


def draw_plan(seed: int, quick: bool = False) -> Plan:
    """The plan for `seed`: 2-3 categories with different supplies (at least one `plenty` and one
    `wearing`; sometimes one `worn out`). `quick` draws smaller targets and fewer faults (CI)."""
    rng = random.Random(seed)
    cats = rng.sample(CATEGORIES, rng.choice((2, 3)))
    supply = ["plenty", "wearing"] + [rng.choice(("plenty", "wearing", "worn out"))] * (len(cats) - 2)
    if len(cats) == 2 and rng.random() < 1 / 3:
        supply[1] = "worn out"
    rng.shuffle(supply)
    lo, hi = (6, 10) if quick else (10, 24)
    targets, batch, wear = {}, {}, {}
    for cat, kind in zip(cats, supply, strict=True):
        batch[cat] = rng.choice((3, 4, 5))
        targets[cat] = rng.randint(lo, hi)
        if kind == "wearing":
            # Repeats climb to a few percent over a run; 429s count as calls too, so stay far from
            # running out.
            wear[cat] = rng.randint(150, 300)
        elif kind == "worn out":
            # The stub's replies repeat earlier ones from call `wear` on, so at most (wear - 1)
            # replies of `batch` instructions are ever fresh: fewer distinct ones than the target.
            wear[cat] = rng.randint(2, 4)
            targets[cat] = wear[cat] * batch[cat] + rng.randint(2, 6)
    plan = Plan(seed, targets, batch, dict(zip(cats, supply, strict=True)), wear,
                p_duplicate=rng.choice((0.0, 0.1, 0.2)), latency_s=round(rng.uniform(0.3, 0.5), 2), events=[])
    plan.events = draw_events(rng, plan, quick)
    return plan


def draw_events(rng: random.Random, plan: Plan, quick: bool) -> list[Event]:
    """Actor kills and 429 bursts anywhere up to 4/5 of the requests the reachable rows need, and
    one whole-run kill between 1/4 and 3/5 of them, so that it lands while the run is going."""
    # One generating call per batch and one answer call per row, for the rows that can be reached.
    need = sum(-(-t // plan.batch[c]) + t for c, t in plan.targets.items() if c not in plan.worn_out)
    roles = [*STAGE_ROLES, *(f"instructor:{c}:0" for c in plan.targets), *(f"queue:answer:{c}" for c in plan.targets)]
    events = [Event("job", rng.randint(need // 4, need * 3 // 5), rng.uniform(0, 1))]
    for _ in range(2 if quick else rng.randint(2, 5)):
        events.append(Event("kill", rng.randint(1, need * 4 // 5), rng.uniform(0, 2), role=rng.choice(roles)))
    for _ in range(1 if quick else rng.randint(1, 3)):
        events.append(Event(
            "429", rng.randint(1, need * 4 // 5), rng.uniform(0, 2), p_429=round(rng.uniform(0.3, 0.9), 2),
            retry_after_s=round(rng.uniform(0.1, 1.0), 2), duration_s=round(rng.uniform(2, 8), 1),
        ))
    return sorted(events, key=lambda e: (e.at_requests, e.delay_s))
