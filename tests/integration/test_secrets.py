"""The API key never leaves the environment: a whole run with a real-looking key (the stub teacher
requires it), then every output is searched for it — the output directory, the driver's stdout and
stderr, every file of the run's private Ray session (logs, events), and the metrics endpoint."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO
from tests.integration.conftest import stub_config, write_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

KEY_ENV = "INSTRUCTFLOW_TEST_SECRET_KEY"
RUN_TIMEOUT_S = 300


def files_holding(root: Path, needle: bytes) -> list[str]:
    """Files under `root` whose bytes contain `needle` (binary files included)."""
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def metrics_port(ray_dir: Path) -> int | None:
    """The metrics export port of the Ray session under `ray_dir`, once Ray has written it."""
    for path in ray_dir.glob("ray/session_*/metrics_export_port_*"):
        text = path.read_text().strip()
        if text.isdigit():
            return int(text)
    return None


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return reply.read().decode("utf-8", "replace")
    except OSError:
        return ""  # not up yet, or already gone


def run_and_scrape(args: list[str], env: dict[str, str], ray_dir: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Runs the CLI to the end, scraping the run's metrics endpoint twice a second meanwhile."""
    scrapes: list[str] = []
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, env=env, cwd=REPO)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            try:
                code = proc.wait(timeout=0.5)  # the scrape period
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise
            port = metrics_port(ray_dir)
            if port is not None and (text := scrape(port)):
                scrapes.append(text)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, code, out.read(), err.read()), scrapes


@pytest.fixture
def ray_dir() -> Iterator[Path]:
    """RAY_TMPDIR for the run's private Ray: short (Ray's socket paths must fit in 108 bytes) and
    removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="ifsec-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.fault(
    fault="a real API key in the environment variable named by teacher.api_key_env",
    expected="the key appears nowhere: output files, driver stdout/stderr, Ray session logs and "
             "events, metrics endpoint",
)
def test_the_api_key_appears_in_no_output(stub_teacher, ray_dir, tmp_path):
    key = "sk-live-" + secrets.token_hex(24)
    stub_teacher.set_faults(require_api_key=key, latency_s=0.2)  # a few seconds of requests to scrape
    out = tmp_path / "out"
    data = stub_config(stub_teacher, out, {"general": {"count": 24, "batch_size": 4, "concurrency": 4},
                                           "trivia": {"count": 8, "batch_size": 4, "concurrency": 2}})
    data["teacher"]["api_key_env"] = KEY_ENV
    data["writer"]["keep_rejects"] = True
    config = write_config(tmp_path / "run.yaml", data)
    # Metrics leave the actors every 0.5 s (default 10 s), so a short run still reaches the endpoint.
    env = {**os.environ, KEY_ENV: key, "RAY_TMPDIR": str(ray_dir), "RAY_metrics_report_interval_ms": "500"}
    try:
        done, scrapes = run_and_scrape(
            [sys.executable, "-m", "instructflow.cluster.cli", "generate", "--config", str(config), "--address", "local"],
            env, ray_dir,
        )
    finally:
        stub_teacher.set_faults(require_api_key=None, latency_s=0.02)

    # The key was really used: the stub answers only requests that carry it.
    assert done.returncode == 0, done.stderr[-3000:]
    assert pq.read_table(out / "data").num_rows == 32
    assert stub_teacher.stats()["by_status"].get("401") is None

    needle = key.encode()
    assert key not in done.stdout and key not in done.stderr
    assert files_holding(out, needle) == []
    sessions = list(ray_dir.glob("ray/session_*/logs"))
    assert sessions and any(sessions[0].iterdir()), f"no Ray session logs under {ray_dir}"
    assert files_holding(ray_dir, needle) == []
    assert scrapes, "the run's metrics endpoint was never reachable"
    exported = [s for s in scrapes if re.search(r"^ray_instructflow_requests_total\{", s, re.M)]
    assert exported, f"the teacher request metrics never reached the endpoint ({len(scrapes)} scrapes)"
    assert not [s for s in scrapes if key in s]
    # Where the key's name is meant to appear, only the name does.
    assert KEY_ENV in (out / "config.effective.yaml").read_text()
