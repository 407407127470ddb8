"""Teacher faults through the whole pipeline (real local Ray, stub teacher server): the run finishes at
exactly the target or stops with one clear message; no actor restarts; every fault shows up in the
run's summary; requests that failed for good are in dead_letters.jsonl with their reason."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster import cli, driver
from instructflow.cluster.accounting import Progress
from instructflow.cluster.driver import run
from instructflow.config import Config, parse_config
from instructflow.instructors.teacher.stub import StubTeacher
from instructflow.instructors.teacher.stub import server as stub_module
from tests.integration.conftest import read_manifest, stub_config, write_config
from tests.integration.test_bad_input import assert_one_clear_error
from tests.integration.test_bad_input import cli as cli_subprocess

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# Fault draws depend only on (seed, request number): with this seed every family below is drawn at
# least once within the first 40 requests, and a run to 30 rows makes more than that.
SEED = 7
STORM = {
    "p_429": 0.14, "retry_after_s": 0.05,
    "p_500": 0.05, "p_503": 0.05,
    "p_hang": 0.04, "hang_max_s": 60.0,
    "p_truncated": 0.05, "p_garbled": 0.05, "p_empty_choices": 0.05,
    "p_missing_usage": 0.15, "p_wrong_format": 0.08,
    "p_length": 0.2, "length_calls": ["respond"],  # answers cut at max_tokens: rejected as truncated
    # 503 for the first 8 requests: both attempts of the 4 calls that open the run, which so fail
    # for good (dead letters for certain).
    "fail_first_n": 8,
}
MAX_ATTEMPTS = 2
HANG_TIMEOUT_S = 2.0  # teacher.timeout_s: how long a hung request holds its slot


@pytest.fixture(scope="module")
def fault_stub():
    with StubTeacher(seed=SEED, latency_s=0.02) as stub:
        yield stub


@pytest.fixture
def stub(fault_stub):
    """The module's stub with fresh counters (request numbering starts over); faults switched off
    again afterwards."""
    defaults = fault_stub.faults
    fault_stub.reset_stats()
    yield fault_stub
    fault_stub.set_faults(**defaults)


def make_config(stub: Any, out: Path, categories: dict[str, Any], **teacher: Any) -> Config:
    data = stub_config(stub, out, categories)
    data["teacher"].update(teacher)
    return parse_config(yaml.safe_dump(data))


def run_actor_restarts(config: Config) -> dict[str, int]:
    """Restarts of every actor of this run (named `run_id/...`, and its teacher gate), from Ray's
    actor table. `ray.util.state.list_actors` needs the dashboard, which the shared Ray runs without."""
    import ray._private.state

    from instructflow.actors.limiter import gate_name

    gate = gate_name(config.teacher.base_url, config.teacher.model, config.run_id)
    actors = ray._private.state.actors().values()
    return {a["Name"]: a["NumRestarts"] for a in actors if a["Name"].startswith(f"{config.run_id}/") or a["Name"] == gate}


def committed_rows(out: Path) -> list[dict[str, Any]]:
    return pq.read_table(out / "data").to_pylist()


def dead_letters(out: Path) -> list[dict[str, Any]]:
    path = out / "dead_letters.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_no_restarts(config: Config) -> None:
    restarts = run_actor_restarts(config)
    assert len(restarts) == driver.actor_count(config), f"the run's actors, found by name: {sorted(restarts)}"
    assert not any(restarts.values()), f"actors restarted: { {k: v for k, v in restarts.items() if v} }"


@pytest.mark.fault(
    fault="teacher storm: 429 with Retry-After, 500/503 bursts, hangs past timeout_s, truncated and "
          "garbled JSON, empty choices, missing usage, wrong-format replies, answers cut at max_tokens",
    expected="run completes at exactly the target; no actor restarts; every attempt counted in the "
             "summary; requests that failed for good dead-lettered with their reason; cut answers "
             "rejected as truncated, in the books and in rejects.jsonl",
)
def test_storm_of_teacher_faults(ray_local, stub, tmp_path, capsys):
    stub.set_faults(**STORM)
    out = tmp_path / "out"
    config = make_config(
        stub, out, {"general": {"count": 30, "batch_size": 5, "concurrency": 4}},
        timeout_s=HANG_TIMEOUT_S, max_attempts=MAX_ATTEMPTS, backoff_base_s=0.02, backoff_max_s=0.2,
    )
    progress = run(config)
    summary = capsys.readouterr().out

    rows = committed_rows(out)
    assert len(rows) == 30 and progress.committed["general"] == 30
    assert len({r["id"] for r in rows}) == 30
    assert all(r["instruction"].strip() and r["response"].strip() for r in rows)
    assert sum(e["rows"] for e in read_manifest(out)) == 30
    assert_no_restarts(config)
    check_every_fault_is_counted(stub.stats(), progress)
    check_dead_letters(out, progress)
    logged = Counter(json.loads(line)["reason"] for line in (out / "rejects.jsonl").read_text().splitlines())
    assert 0 < logged["truncated"] == progress.rejects["instructor:truncated"] <= stub.stats()["faults_injected"]["p_length"]
    assert "summary (complete)" in summary
    assert f"5xx {progress.requests['5xx']}" in summary
    assert progress.truncated == progress.rejects["instructor:truncated"]  # only answers run past the cap here
    # Their instructions (and those of answers that failed for good) left the novelty index again.
    assert progress.released >= progress.rejects["instructor:truncated"]
    assert f"({progress.released} released: their answer made no row)" in summary
    assert f"(retried {progress.retries}, cut at max_tokens {progress.truncated})" in summary
    assert f"server_error {progress.failures['server_error']}" in summary  # the failed calls row


def check_every_fault_is_counted(served: dict[str, Any], progress: Progress) -> None:
    injected = served["faults_injected"]
    for fault in ("p_429", "p_500", "p_503", "p_hang", "p_truncated", "p_garbled", "p_empty_choices",
                  "p_missing_usage", "p_wrong_format", "fail_first_n"):
        assert injected.get(fault, 0) > 0, f"{fault} was never injected; the storm is too weak: {injected}"
    by_status = Counter({int(k): v for k, v in served["by_status"].items()})
    requests = progress.requests
    assert sum(requests.values()) == served["requests"], (requests, served)  # every attempt the stub saw
    assert requests["429"] == by_status[429]
    assert requests["5xx"] == by_status[500] + by_status[503]
    assert requests["timeout"] == injected["p_hang"]  # hung requests cut off by teacher.timeout_s
    assert requests["2xx"] == by_status[200]
    # Each failed attempt was either retried or ended its request for good.
    failed = sum(requests.values()) - progress.replies
    assert failed == progress.retries + sum(progress.failures.values()) - progress.failures["unparseable"]
    assert progress.failures["server_error"] >= 4  # the opening burst of 503s


def check_dead_letters(out: Path, progress: Progress) -> None:
    letters = dead_letters(out)
    assert letters, "requests failed for good but dead_letters.jsonl is empty"
    assert Counter(x["reason"] for x in letters) == +progress.failures
    for letter in letters:
        assert letter["category"] == "general" and letter["call"] in ("generate", "respond")
        assert letter["detail"]


def record_reply_tokens(stub: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Tokens (prompt + completion) the stub bills for each reply it sends, as a list that fills
    while the run goes."""
    sizes: list[int] = []
    real = stub._completion

    def recording(body: Any, prompt: str, content: str, *rest: Any) -> Any:
        sizes.append(stub_module._tokens(prompt) + stub_module._tokens(content))
        return real(body, prompt, content, *rest)

    monkeypatch.setattr(stub, "_completion", recording)
    return sizes


def cli_run(config: dict[str, Any], path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, Progress | None]:
    """`instructflow generate --config PATH` in this process (it joins the shared local Ray), and
    the Progress the driver returned."""
    seen: dict[str, Progress] = {}
    real_run = driver.run

    def spy(*args: Any, **kwargs: Any) -> Progress:
        seen["progress"] = real_run(*args, **kwargs)
        return seen["progress"]

    monkeypatch.setattr(driver, "run", spy)
    code = cli.main(["generate", "--config", str(write_config(path, config))])
    return code, seen.get("progress")


BUDGET, WINDOW = 4000, 4  # tokens; teacher.limits.max_in_flight
KEY_ENV = "INSTRUCTFLOW_TEST_WRONG_KEY"


@pytest.mark.fault(
    fault=f"token budget ({BUDGET} tokens) far below what the target needs",
    expected="run stops with 'budget exhausted'; tokens billed stay within budget + in-flight window; "
             "every accepted row committed intact; CLI exits 1 naming the budget",
)
def test_budget_ends_the_run_cleanly(ray_local, stub, tmp_path, monkeypatch, capsys):
    sizes = record_reply_tokens(stub, monkeypatch)
    out = tmp_path / "out"
    data = stub_config(stub, out, {"general": {"count": 200, "batch_size": 5, "concurrency": 4}})
    data["teacher"].update(limits={"max_in_flight": WINDOW}, budget={"max_tokens_total": BUDGET})
    code, progress = cli_run(data, tmp_path / "run.yaml", monkeypatch)
    printed = capsys.readouterr()

    assert code == 1 and progress is not None
    assert "stopping: budget exhausted" in printed.out
    assert "the teacher budget is spent (teacher.budget)" in printed.err
    billed = stub.stats()["tokens"]
    assert billed == progress.prompt_tokens + progress.completion_tokens  # client and server agree
    assert BUDGET <= billed <= BUDGET + WINDOW * max(sizes), (billed, max(sizes))
    check_committed_intact(out, progress)


def check_committed_intact(out: Path, progress: Progress) -> None:
    """Every accepted row made it into a part the manifest names, with the recorded checksum."""
    import hashlib

    entries = read_manifest(out)
    for entry in entries:
        assert hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    rows = committed_rows(out) if entries else []
    assert len(rows) == sum(e["rows"] for e in entries) == progress.committed["general"]
    assert progress.committed == progress.accepted  # nothing accepted was left uncommitted
    assert len({r["id"] for r in rows}) == len(rows)
    assert not [p.name for p in (out / "data").iterdir() if ".tmp-" in p.name]


@pytest.mark.fault(
    fault="teacher answers 401: the variable named by teacher.api_key_env holds a wrong key",
    expected="CLI exits 1 before Ray starts (the key is checked at /models, which is free), with one "
             "line naming the variable; no paid request; the key value appears in no output",
)
def test_wrong_api_key_stops_the_run_naming_the_variable(stub, tmp_path):
    wrong = "sk-wrong-" + secrets.token_hex(16)
    stub.set_faults(require_api_key="sk-right-" + secrets.token_hex(16))
    out = tmp_path / "out"
    data = stub_config(stub, out, {"general": {"count": 20, "batch_size": 5, "concurrency": 4}})
    data["teacher"]["api_key_env"] = KEY_ENV
    config = write_config(tmp_path / "run.yaml", data)

    result = cli_subprocess("generate", "--config", str(config), "--address", "local", env={KEY_ENV: wrong})

    assert_one_clear_error(result, 1, "run stopped", "rejected the API key", "HTTP 401", KEY_ENV)
    served = stub.stats()
    assert served["models_requests"] == 1 and served["requests"] == 0, served  # refused before any paid call
    assert "starting Ray" not in result.stdout + result.stderr
    assert wrong not in result.stdout + result.stderr
    leaks = [p for p in out.rglob("*") if p.is_file() and wrong.encode() in p.read_bytes()]
    assert leaks == []


@pytest.mark.fault(
    fault="the API key variable is set for the driver but not in the Ray workers' environment",
    expected="CLI exits 1 with one line naming the variable (not a Ray traceback); the key never shown",
)
def test_key_missing_in_the_workers_is_one_clear_error(ray_local, stub, tmp_path, monkeypatch, capsys):
    # The shared Ray started before this variable existed, so its workers cannot see it; the
    # driver can, so preflight passes: the same as joining a cluster started without the key.
    name, key = "INSTRUCTFLOW_TEST_DRIVER_ONLY_KEY", "sk-driver-only-" + secrets.token_hex(8)
    monkeypatch.setenv(name, key)
    data = stub_config(stub, tmp_path / "out", {"general": {"count": 5}})
    data["teacher"]["api_key_env"] = name
    code, _ = cli_run(data, tmp_path / "run.yaml", monkeypatch)
    printed = capsys.readouterr()
    ours = [line for line in printed.err.splitlines() if line.startswith("instructflow:")]
    assert code == 1 and len(ours) == 1, printed.err[-3000:]
    assert "an actor of the run could not start" in ours[0] and f"environment variable {name} is not set" in ours[0]
    assert key not in printed.out + printed.err
    assert stub.stats()["requests"] == 0  # nothing was sent


@pytest.mark.fault(
    fault="teacher unreachable (nothing listens at base_url)",
    expected="the run ends with one message naming the failure, instead of retrying forever",
)
def test_unreachable_teacher_trips_the_circuit_breaker(ray_local, tmp_path):
    from types import SimpleNamespace

    from tests.integration.raycluster import free_port

    nobody = SimpleNamespace(base_url=f"http://127.0.0.1:{free_port()}/v1")  # no server on that port
    data = stub_config(nobody, tmp_path / "out", {"general": {"count": 5}})
    data["teacher"].update(max_failures_in_a_row=3, max_attempts=2)
    with pytest.raises(driver.RunError) as err:
        run(parse_config(yaml.safe_dump(data)))
    message = str(err.value)
    assert "failed 3 requests in a row" in message and "teacher.base_url" in message
    assert not list((tmp_path / "out").glob("data/part-*.parquet"))
