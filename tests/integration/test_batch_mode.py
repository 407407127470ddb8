"""`teacher.mode: batch` on a real local Ray: generating, answer and judge calls go through the stub's
Batch API; the instructor is SIGKILLed while its first batch is pending on the server. Ray restarts
it in a new process, which reads the batch journal, sends the same requests again (its generating
prompts come from the same seed) and finds them in the running batch instead of paying again. The
run must end at exactly the target with balanced books, and the stub must have been paid once per
custom_id.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster.driver import NAMESPACE, actor_name, run
from instructflow.config import parse_config
from instructflow.instructors.teacher.batch import BATCH_DIR
from tests.integration.conftest import stub_config
from tests.integration.dataset_checks import check_dataset
from tests.integration.test_actor_faults import RESTART_S, actor_pid, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(300)]

TARGETS = {"general": 8}
THRESHOLD = 0.9
BATCH_WINDOW_S = 1.5  # long enough for the kill to land while the first batch runs


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in (out / BATCH_DIR).glob("journal-*.jsonl")
            for line in path.read_text().splitlines() if line.strip()]


def kill_while_first_batch_pends(out: Path, name: str, killed: dict[str, Any]) -> None:
    """SIGKILLs the instructor once its first batch exists and nothing has come back yet."""
    import ray

    def find() -> Any:
        try:
            return ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return None  # not created yet

    try:
        handle = wait_for(find, 240, f"{name} was never created")
        pid = actor_pid(handle, timeout=120)  # before the batch exists: the kill then lands at once
        wait_for(lambda: any(r["kind"] == "batch" for r in records(out)), 240, "no batch was created")
        killed["pending"] = [r for r in records(out) if r["kind"] in ("end", "used")] == []
        killed["lines"] = sum(len(r["ids"]) for r in records(out) if r["kind"] == "submit")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: actor_pid(handle, timeout=RESTART_S) != pid, RESTART_S, f"{name} did not come back")
    except BaseException as exc:  # reported by the test thread
        killed["error"] = exc


@pytest.mark.fault(
    fault="the instructor SIGKILLed while its first Batch API batch is pending (teacher.mode batch)",
    expected="its new process re-attaches to the running batch; exact target; no custom_id paid twice",
)
def test_batch_mode_survives_a_kill_while_a_batch_is_pending(ray_local, stub_teacher, tmp_path):
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
    config = parse_config(yaml.safe_dump(data))
    killed: dict[str, Any] = {}
    killer = threading.Thread(target=kill_while_first_batch_pends,
                              args=(out, actor_name(config, "instructor:general:0"), killed), daemon=True)
    killer.start()
    try:
        progress = run(config)
    finally:
        killer.join(timeout=RESTART_S)
        stub_teacher.set_faults(batch_window_s=1.0)
    assert "error" not in killed, f"fault injection failed: {killed.get('error')!r}"
    assert killed["pending"], "the kill landed after the first batch had come back"

    check_dataset(out, TARGETS, THRESHOLD)
    assert progress.all_done() and progress.books.accepted["general"] == TARGETS["general"]
    assert progress.generated["general"] == progress.books.terminal("general") + progress.lost["general"]
    paid = stub_teacher.stats()["batch"]
    assert paid["paid_twice"] == [], paid
    assert stub_teacher.stats()["requests"] == 0  # every call went through batches
    # The new process found the killed one's generating lines in the batch still running.
    assert progress.batch["attached"] == killed["lines"] and killed["lines"] > 0, progress.batch
    kinds = {cid.split(":")[1] for r in records(out) if r["kind"] == "submit" for cid in r["ids"]}
    assert {"generate", "respond", "judge"} <= kinds, kinds
