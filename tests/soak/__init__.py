"""Soak: whole runs under a seeded random schedule of faults, each checked against the promises.

    .venv/bin/python -m tests.soak --runs 5 [--seed 1] [--quick] [--keep DIR]

One run (`soak`): a fresh output directory; a stub teacher whose supply differs per category
(`plenty`; `wearing`: it repeats itself more and more; `worn out`: it can never supply the target);
the CLI as a subprocess on a private Ray; and a schedule drawn from `random.Random(seed)`
(`draw_plan`) of actor kills (SIGKILL of the named actor's worker process, found in that Ray's
GCS), 429 bursts (`StubTeacher.set_faults`) and one SIGKILL of the whole run, after which the same
command runs again and resumes. Each event fires once the stub has served a drawn number of
requests, after a drawn delay.

Every run must end either complete (exit 0, exactly the target per category, unique ids, no
near-duplicates, every part intact) or with exit 1 naming a reason ("novelty saturated", "no
progress") for each category given up, where only worn-out categories may be given up and every
other category is still complete; and the final summary's books must balance (generated =
accepted + rejected + dropped + lost, nothing in flight). The CI part is
tests/integration/test_soak.py.
"""

from tests.soak.plan import Plan, draw_plan
from tests.soak.run import Result, soak, table

__all__ = ["Plan", "Result", "draw_plan", "soak", "table"]
