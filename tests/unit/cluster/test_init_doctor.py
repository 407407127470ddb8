"""`instructflow init` and `instructflow doctor` against the stub teacher (a real HTTP server)."""

from __future__ import annotations

import socket

import pytest
import yaml

from instructflow.cluster.cli import main
from instructflow.config import load_config
from instructflow.instructors.teacher.stub import StubTeacher

KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def stub():
    with StubTeacher(seed=3, require_api_key=KEY) as server:
        yield server


def _free_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"  # closed again: nothing answers there


def test_init_probes_a_server_and_writes_a_commented_config_without_the_key(stub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MY_TEACHER_KEY", KEY)
    path = tmp_path / "mine.yaml"
    code = main(["init", "--yes", "--teacher", "vllm", "--base-url", stub.base_url, "--api-key-env", "MY_TEACHER_KEY",
                 "--category", "general=50,trivia=20", "--config", str(path),
                 "--output-dir", str(tmp_path / "out")])
    said = capsys.readouterr().out
    assert code == 0, said
    assert "stub-teacher listed; a 4-token chat call took" in said and f"wrote     {path}" in said
    text = path.read_text()
    assert KEY not in text and "api_key_env: MY_TEACHER_KEY" in text
    assert "max_in_flight: 64   # vLLM batches" in text  # a vLLM server gets a vLLM-sized concurrency
    config = load_config(path)
    assert config.teacher.model == "stub-teacher"  # the server's only model
    assert {n: p.count for n, p in config.categories.items()} == {"general": 50, "trivia": 20}
    assert all(p.concurrency == 16 for p in config.categories.values())
    assert main(["init", "--yes", "--teacher", "vllm", "--base-url", stub.base_url, "--config", str(path)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and path.read_text() == text

    # The doctor agrees it is ready (topics: none, so nothing is generated or read).
    data = yaml.safe_load(text)
    data["topics"] = {"file": None}
    path.write_text(yaml.safe_dump(data))
    code = main(["doctor", "--config", str(path), "--address", "local"])
    said = capsys.readouterr().out
    assert code == 0, said
    statuses = {line[6:22].strip(): line[:4].strip() for line in said.splitlines() if not line.startswith("doctor")}
    assert set(statuses.values()) == {"ok"}, said
    assert {"python", "packages", "ray", "config", "teacher key", "teacher model", "teacher", "output",
            "embedding model"} <= set(statuses), said
    assert said.splitlines()[-1].startswith("doctor: ready to run")

    # Without the key's variable, the doctor names it and says a run is blocked.
    monkeypatch.delenv("MY_TEACHER_KEY")
    code = main(["doctor", "--config", str(path), "--address", "local"])
    said = capsys.readouterr().out
    assert code == 1 and "FAIL  teacher key      MY_TEACHER_KEY is not set" in said, said
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-wrong")
    code = main(["doctor", "--config", str(path), "--address", "local"])
    said = capsys.readouterr().out
    assert code == 1 and "HTTP 401 (the key is missing or wrong)" in said and "sk-wrong" not in said, said


def test_init_refuses_a_server_that_does_not_answer_unless_told_not_to_ask(tmp_path, capsys):
    url = _free_url()
    path = tmp_path / "x.yaml"
    assert main(["init", "--yes", "--teacher", "ollama", "--base-url", url, "--config", str(path)]) == 2
    assert f"cannot reach {url}/models" in capsys.readouterr().err and not path.exists()
    assert main(["init", "--yes", "--teacher", "ollama", "--base-url", url, "--model", "llama3.2",
                 "--no-probe", "--config", str(path)]) == 0
    config = load_config(path)
    assert (config.teacher.base_url, config.teacher.model, config.teacher.api_key_env) == (url, "llama3.2", None)
    assert config.teacher.limits.max_in_flight == 4  # Ollama's default parallelism


def test_doctor_fails_an_output_location_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(["doctor", "--set", f"run.output_dir={blocker / 'out'}", "--address", "local"])
    said = capsys.readouterr().out
    assert code == 1 and f"FAIL  output           {blocker / 'out'}: {blocker} is not a writable directory" in said, said
    assert "ok    teacher weights" in said  # the quickstart's embedded model: its checksum is checked


def test_a_run_checks_the_key_at_models_before_it_starts(stub, tmp_path, monkeypatch):
    """A refused key stops `generate` before Ray starts (no paid call); a key the server takes, and a
    server that cannot be asked, let the run go on to its own checks."""
    from instructflow.cluster.driver import RunError, check_key
    from instructflow.cluster.probe import key_refused
    from instructflow.config import parse_config

    monkeypatch.setenv("RIGHT_KEY", KEY)
    monkeypatch.setenv("WRONG_KEY", "sk-wrong-key-0000")
    assert not key_refused(stub.base_url, "RIGHT_KEY")
    assert key_refused(stub.base_url, "WRONG_KEY")
    assert not key_refused(_free_url(), "WRONG_KEY")  # unreachable: the run's client says so later

    data = {"run": {"output_dir": str(tmp_path / "out")}, "categories": {"general": {"count": 1}},
            "teacher": {"base_url": stub.base_url, "model": "stub-teacher", "api_key_env": "WRONG_KEY"}}
    before = stub.stats()
    with pytest.raises(RunError, match=r"rejected the API key \(HTTP 401.*check the environment variable WRONG_KEY"):
        check_key(parse_config(yaml.safe_dump(data)))
    after = stub.stats()
    assert after["requests"] == before["requests"] and after["models_requests"] == before["models_requests"] + 1
    data["teacher"]["api_key_env"] = "RIGHT_KEY"
    check_key(parse_config(yaml.safe_dump(data)))
