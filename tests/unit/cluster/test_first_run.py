"""A first run's screen: Ray's advice a user cannot act on is kept off it, and the run ends with
where the data is, what it cost and what to run next."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster import quiet
from instructflow.cluster.accounting import Progress
from instructflow.cluster.epilogue import Spend, closing_lines, shown_path
from instructflow.config import parse_config

# Verbatim from a quickstart run on 2 cores (Ray 2.60).
ADVISORY = (
    "WARNING: 8 PYTHON worker processes have been started on node: 54a5e3e892b1904624d773c81c8300779bedf21e1ca0"
    "dba7a8aad64d with address: 192.0.2.2, which is 4x the maximum expected startup concurrency (2). This could "
    "be a result of using a large number of actors, tasks blocked in ray.get() calls, or tasks with fractional "
    "CPU requests (e.g., num_cpus=0.1) allowing high concurrency. See https://github.com/ray-project/ray/issues/"
    "3644 for some discussion of workarounds."
)


def test_only_the_worker_pool_advisory_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._private import worker

    printed: list[dict] = []
    monkeypatch.setattr(worker, "print_to_stdstream", lambda data, ignore_prefix: printed.append(data))
    quiet.drop_worker_pool_advisory()
    quiet.drop_worker_pool_advisory()  # idempotent: wrapped once
    oom = "Task was killed due to the node running low on memory."
    for data in (
        {"lines": [ADVISORY], "pid": "raylet", "is_err": False},
        {"lines": [oom], "pid": "raylet", "is_err": False},
        {"lines": [ADVISORY], "pid": 4242, "is_err": False},  # an actor printing the same text is not the raylet
    ):
        worker.print_to_stdstream(data, ignore_prefix=False)
    assert [(d["pid"], d["lines"]) for d in printed] == [("raylet", [oom]), (4242, [ADVISORY])]


def test_a_cluster_this_process_starts_gets_rays_default_auth_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Re-reading Ray's C++ config is recorded, not done: it would switch this test process's Ray to
    # token auth for every later test that starts one (the environment is restored, that config not).
    reloads: list[str | None] = []
    monkeypatch.setattr(quiet, "_reload_ray_config", lambda: reloads.append(os.environ.get("RAY_AUTH_MODE")))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    quiet.prepare_ray(starts_cluster=False)  # joining: the cluster's operator chose its mode
    assert "RAY_AUTH_MODE" not in os.environ and reloads == []
    quiet.prepare_ray(starts_cluster=True)
    assert os.environ["RAY_AUTH_MODE"] == "token" and reloads == ["token"]
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    quiet.prepare_ray(starts_cluster=True)  # the user's own setting wins
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and reloads == ["token"]


def _config(teacher: dict, output_dir: str = "out/x") -> object:
    import yaml

    data = {"run": {"output_dir": output_dir}, "teacher": teacher,
            "categories": {"general": {"count": 12}, "writing": {"count": 8}}}
    return parse_config(yaml.safe_dump(data))


def _progress(general: int, writing: int) -> Progress:
    p = Progress(targets={"general": 12, "writing": 8})
    p.committed = Counter({"general": general, "writing": writing})
    p.prompt_tokens, p.completion_tokens = 5480, 9499
    return p


def test_a_complete_embedded_run_ends_with_data_cost_and_next_commands(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    config = _config({"kind": "embedded", "model": "smollm2-135m"})
    lines = closing_lines(config, _progress(12, 8), str(tmp_path / "out" / "quickstart"),
                          Spend.of(None, _progress(12, 8)), "complete")
    text = "\n".join(lines)
    assert lines[0] == "20 rows (general 12, writing 8) in out/quickstart/"
    assert "out/quickstart/data/*.parquet" in text and "out/quickstart/instructions.jsonl" in text
    assert "14,979 teacher tokens (prompt 5,480 + completion 9,499); no charge" in text
    commands = [line.split("#")[0].strip().removeprefix("next").strip() for line in lines if "#" in line]
    assert commands == [
        "instructflow export out/quickstart --format sharegpt --format alpaca",
        "instructflow report out/quickstart",
        "instructflow init",
    ]


def test_a_paid_teacher_states_dollars_or_why_there_are_none(tmp_path: Path) -> None:
    prices = {"gpt-4o-mini": {"prompt_per_1k": 0.00015, "completion_per_1k": 0.0006}}
    config = _config({"kind": "openai", "model": "gpt-4o-mini", "budget": {"prices": prices}})
    snapshot = {"prompt_tokens": 1000, "completion_tokens": 500, "cost_spent_usd": 0.00045, "unpriced_tokens": 0}
    priced = closing_lines(config, _progress(12, 8), str(tmp_path), Spend.of(snapshot, _progress(12, 8)), "complete")
    assert any("1,500 teacher tokens (prompt 1,000 + completion 500) = $0.0004" in line for line in priced)
    unpriced = {**snapshot, "cost_spent_usd": 0.0, "unpriced_tokens": 0}  # no prices: nothing is counted as unpriced
    config = _config({"kind": "openai", "model": "gpt-4o-mini"})
    lines = closing_lines(config, _progress(3, 0), str(tmp_path), Spend.of(unpriced, _progress(3, 0)),
                          "incomplete: writing: stalled")
    text = "\n".join(lines)
    assert "no price for gpt-4o-mini in teacher.budget.prices" in text
    assert "instructflow generate --config" in lines[-3] and "resumes" in lines[-3]  # first: how to finish
    assert "instructflow init" not in text  # already on their own teacher


def test_paths_are_shown_as_typed() -> None:
    assert shown_path(str(Path.cwd() / "out" / "q")) == "out/q"
    assert shown_path("/elsewhere/q") == "/elsewhere/q"
    assert shown_path("s3://bucket/run") == "s3://bucket/run"
