"""One soak run: the stub teacher, the CLI (run again after the whole-run kill), and the verdict."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.integration.conftest import stub_config
from tests.integration.dataset_checks import check_dataset, read_parts
from tests.integration.processes import cli_env, command, kill_run
from tests.soak.faults import Injector, Interrupted
from tests.soak.plan import Plan

THRESHOLD = 0.9
GIVE_UP_REASONS = ("novelty saturated", "no progress")


@dataclass
class Result:
    """How one run ended (`ok`: as promised), with what was injected and the CLI logs."""

    plan: Plan
    ok: bool = False
    outcome: str = "not run"
    rows: dict[str, int] = field(default_factory=dict)
    injected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    logs: list[Path] = field(default_factory=list)

    def rows_text(self) -> str:
        return ", ".join(f"{c} {self.rows.get(c, 0)}/{t}" for c, t in self.plan.targets.items())

    def line(self) -> str:
        skipped = f" ({len(self.skipped)} skipped)" if self.skipped else ""
        return (f"seed {self.plan.seed}: {len(self.injected)} events{skipped} -> {self.outcome}; "
                f"rows {self.rows_text()}; {self.seconds:.0f} s  [{'; '.join(self.injected)}]")

    def report(self) -> str:
        """The line, the plan, and the tail of the last CLI log (for a failure)."""
        tail = self.logs[-1].read_text()[-4000:] if self.logs else ""
        return f"{self.line()}\nplan: {self.plan}\nskipped: {self.skipped}\nlogs: {[str(p) for p in self.logs]}\n{tail}"


def soak(plan: Plan, workdir: Path, limit_s: float = 600.0) -> Result:
    """Runs `plan` in `workdir` (an empty directory), bounded by `limit_s`, and judges how it ended."""
    from instructflow.instructors.teacher.stub import StubTeacher

    result = Result(plan)
    started = time.monotonic()
    rc = None
    with StubTeacher(seed=plan.seed, latency_s=plan.latency_s, p_duplicate=plan.p_duplicate, wear=plan.wear) as stub:
        config = write_config(plan, stub, workdir)
        injector = Injector(plan.events, stub, workdir / "out", config)
        try:
            rc = run_until_exit(injector, config, workdir, result, started + limit_s)
        except Interrupted as exc:
            result.outcome = f"FAILED: {exc}"
        finally:
            injector.close()
            result.injected, result.skipped = injector.injected, injector.skipped
    result.seconds = time.monotonic() - started
    if rc is not None:
        judge(result, rc, workdir / "out")
    return result


def write_config(plan: Plan, stub: Any, workdir: Path) -> Path:
    # One teacher call at a time per category, so that the rows (and the faults) spread over the run.
    categories = {c: {"count": t, "batch_size": plan.batch[c], "concurrency": 1} for c, t in plan.targets.items()}
    data = stub_config(
        stub, workdir / "out", categories,
        # A restarted embedder reloads its model: stay well above that before calling a stall.
        run={"seed": plan.seed, "drain_timeout_s": 30, "stall_timeout_s": 90,
             "saturation_window": 40, "min_novel_share": 0.05},
        novelty={"threshold": THRESHOLD},
        writer={"rows_per_part": 4, "flush_interval_s": 0.3},
    )
    path = workdir / "run.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_until_exit(injector: Injector, config: Path, workdir: Path, result: Result, deadline: float) -> int:
    """Runs the CLI, and the same command again after a whole-run kill, until it exits by itself."""
    while True:
        log_path = workdir / f"cli-{len(result.logs)}.log"
        result.logs.append(log_path)
        with open(log_path, "w") as log:
            proc = subprocess.Popen(command(config), stdout=log, stderr=subprocess.STDOUT,
                                    env=cli_env(), start_new_session=True)
            try:
                rc = injector.drive(proc, deadline)
            finally:
                kill_run(proc)  # what a killed or timed-out run left behind; nothing after an exit
        if rc is not None:
            return rc


def judge(result: Result, rc: int, out: Path) -> None:
    """Complete, or given up with a named reason for worn-out categories only, the others complete;
    in both cases unique ids, no near-duplicates, every committed part intact and balanced books."""
    plan, log = result.plan, result.logs[-1].read_text()
    try:
        rows = read_parts(out) if (out / "manifest.jsonl").exists() else []
        result.rows = {c: sum(r["category"] == c for r in rows) for c in plan.targets}
        given_up = named_reasons(log) if rc != 0 else {}
        last = next((line for line in reversed(log.splitlines()) if line.startswith("instructflow:")), "")
        assert rc == 0 or (rc == 1 and given_up), f"exit {rc} without a named reason: {last!r}"
        wrong = {c: r for c, r in given_up.items() if c not in plan.worn_out}
        assert not wrong, f"gave up categories the teacher could still supply: {wrong}"
        unreached = plan.worn_out - set(given_up)
        assert not unreached, f"worn-out categories reached their target: {sorted(unreached)}"
        short = {c: result.rows[c] for c in given_up}
        assert all(n < plan.targets[c] for c, n in short.items()), f"given up at its target: {short}"
        check_dataset(out, {**plan.targets, **short}, THRESHOLD)
        off = unbalanced_books(log, plan.targets)
        assert not off, f"the final summary's books do not balance: {off}"
    except AssertionError as exc:
        result.outcome = f"FAILED: {exc}"
        return
    result.ok = True
    reasons = ", ".join(f"{c} ({r.split(':')[0]})" for c, r in given_up.items())
    result.outcome = f"given up: {reasons}" if given_up else "complete"


def named_reasons(log: str) -> dict[str, str]:
    """category -> reason, from "run stopped: incomplete: trivia: novelty saturated: ...; ..."."""
    match = re.search(r"run stopped: incomplete: (.+?); every row accepted so far is committed", log)
    if not match:
        return {}
    parts = dict(p.split(": ", 1) for p in match.group(1).split("; ") if ": " in p)
    return {c: r for c, r in parts.items() if r.startswith(GIVE_UP_REASONS)}


def unbalanced_books(log: str, targets: dict[str, int]) -> dict[str, str]:
    """Categories whose books in the final summary table do not add up: generated must equal
    accepted + rejected + dropped + lost, with nothing in flight (README: "the books are exact")."""
    header, books = None, {}
    for line in log.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and cells[0] == "category":
            header = cells
        elif header and len(cells) == len(header):
            numbers = (float(c.replace(",", "")) for c in cells[1:])
            books[cells[0].removesuffix(" (given up)")] = dict(zip(header[1:], numbers, strict=True))
    off = {}
    for cat in targets:
        b = books.get(cat)
        if b is None:
            off[cat] = "not in a summary table"
        elif b["generated"] != b["accepted"] + b["rejected"] + b["dropped"] + b["lost"] or b["in flight"]:
            off[cat] = ", ".join(f"{k} {b[k]:g}" for k in ("generated", "accepted", "rejected", "dropped", "lost", "in flight"))
    return off


def table(results: list[Result]) -> str:
    """The runs as a Markdown table (for docs/reliability.md)."""
    lines = ["| seed | categories: target (supply) | faults injected (at committed rows) | outcome | rows | s |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.plan.seed} | {r.plan.describe()} | {'; '.join(r.injected)} | {r.outcome} | "
                     f"{r.rows_text()} | {r.seconds:.0f} |")
    ok = sum(r.ok for r in results)
    return "\n".join(lines) + f"\n\n{len(results)} runs: {ok} ended as promised, {len(results) - ok} did not."
