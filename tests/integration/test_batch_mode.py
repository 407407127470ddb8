"""`teacher.mode: batch`, the whole run killed while a batch is pending: generating, answer and judge
calls go through the stub's Batch API; the CLI -- its private Ray and every actor process -- is
SIGKILLed once its first batch is on the server and nothing has come back. The same command run
again reads the batch journal the killed run left in the output, sends the same requests (its
generating prompts come from the same seed and the same empty output) and finds them in the batch
still running instead of paying again. The rerun must end at exactly the target with balanced books,
and the stub must have been paid once per custom_id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from instructflow.instructors.teacher.batch import BATCH_DIR
from tests.integration.conftest import stub_config
from tests.integration.dataset_checks import check_dataset, committed_rows
from tests.integration.processes import command, run_cli

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(400)]

TARGETS = {"general": 8}
THRESHOLD = 0.9
BATCH_WINDOW_S = 3.0  # long enough for the kill to land while the first batch runs
RUN_DEADLINE_S = 180.0  # one CLI run: private Ray start, actor start-up, the batches


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in (out / BATCH_DIR).glob("journal-*.jsonl")
            for line in path.read_text().splitlines() if line.strip()]


def pending(out: Path) -> bool:
    """A batch was created and nothing of any batch has come back yet."""
    kinds = {r["kind"] for r in records(out)}
    return "batch" in kinds and not kinds & {"end", "used"}


def run_batch_cli(config: Path, log_path: Path, kill_when_pending: bool) -> tuple[int, str]:
    """Runs the CLI to its end, or SIGKILLs its whole session once a batch is pending.
    Returns the exit code (-9 when killed) and its output."""
    when = (lambda: pending(config.parent / "out")) if kill_when_pending else None
    return run_cli(command(config), log_path, RUN_DEADLINE_S, kill_when=when)


def batch_line(summary: str) -> dict[str, int]:
    """The summary's `batches` line as numbers (`batches 2  lines 9  attached 4 ...`)."""
    line = next((s for s in summary.splitlines() if s.startswith("batches ")), "")
    return {k: int(v) for k, v in re.findall(r"([a-z_]+) (\d+)", line)}


@pytest.mark.fault(
    fault="the whole run (CLI, its Ray, every actor) SIGKILLed while its first Batch API batch is pending",
    expected="the rerun re-attaches to the running batch; exact target; no custom_id paid twice",
)
def test_a_killed_run_reattaches_to_its_pending_batch(stub_teacher, tmp_path):
    stub_teacher.reset_stats()
    stub_teacher.set_faults(batch_window_s=BATCH_WINDOW_S)
    out = tmp_path / "out"
    data = stub_config(
        stub_teacher, out, {"general": {"count": TARGETS["general"], "batch_size": 4, "concurrency": 2}},
        run={"drain_timeout_s": 30, "seed": 3},
        novelty={"threshold": THRESHOLD},
        judge={"llm": {"enabled": True}},
        writer={"rows_per_part": 4, "flush_interval_s": 0.3},
    )
    data["teacher"].update(mode="batch", batch={"generate": True, "max_wait_s": 0.2, "poll_interval_s": 0.1})
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        rc, first = run_batch_cli(config, tmp_path / "cli-0.log", kill_when_pending=True)
        assert rc == -9, f"the run ended by itself (exit {rc}) before a batch was pending:\n{first[-3000:]}"
        assert committed_rows(out) == 0
        sent = sum(len(r["ids"]) for r in records(out) if r["kind"] == "submit")
        assert sent > 0
        rc, rerun = run_batch_cli(config, tmp_path / "cli-1.log", kill_when_pending=False)
    finally:
        stub_teacher.set_faults(batch_window_s=1.0)
    assert rc == 0, rerun[-3000:]
    assert "summary (complete)" in rerun

    check_dataset(out, TARGETS, THRESHOLD)
    paid = stub_teacher.stats()["batch"]
    assert paid["paid_twice"] == [], paid
    assert stub_teacher.stats()["requests"] == 0  # every call went through batches
    # The rerun found the killed run's lines in the batch still running (or its output file).
    batches = batch_line(rerun)
    print(f"lines sent before the kill: {sent}; the rerun's batches: {batches}")  # shown with -s
    assert batches.get("attached", 0) + batches.get("reused", 0) == sent, (sent, batches, rerun[-2500:])
    kinds = {cid.split(":")[1] for r in records(out) if r["kind"] == "submit" for cid in r["ids"]}
    assert {"generate", "respond", "judge"} <= kinds, kinds
