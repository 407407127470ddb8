"""The quickstart as a newcomer runs it: the `instructflow generate` command line, the quickstart's
own config, a fresh private Ray and a shell without any RAY_* variable. Everything it prints must be
instructflow's own, and it must end with where the data is, what it cost and what to run next.

The teacher is the stub server instead of the embedded model (the only change to the config): the
embedded model takes minutes on two cores, while everything that prints here -- the CLI, the
driver, Ray's start and shutdown, the actors -- is the same code path. What the embedded path adds
on top, Ray Serve, is checked for the same noise in test_embedded_teacher.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.config import CONFIG_DIR, load_config
from tests.integration.column_rules import Run, column_violations
from tests.integration.processes import kill_run

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# What library output looks like: a log record's level or timestamp, a line forwarded from a Ray
# process, a Python warning or traceback.
NOISE = re.compile(
    r"\b(?:WARNING|WARN|ERROR|INFO|DEBUG|CRITICAL)\b|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d|\((?:raylet|pid=|\w+ pid=)"
    r"|Warning:|Traceback|^\s*File \"|Exception"
)
GENERAL, WRITING = 6, 3
OWN = re.compile(r"^(?:instructflow |\[\s*\d+s\] |  |\s*$)")


def quickstart_on_the_stub(stub_url: str, tmp_path: Path) -> Path:
    data = yaml.safe_load((CONFIG_DIR / "quickstart.yaml").read_text())
    # The stub's recorded answers are longer than the quickstart's 256-token cap for the small model.
    data["teacher"] = {"kind": "openai", "base_url": stub_url, "model": "stub", "api_key_env": None,
                       "max_tokens": 2048, "timeout_s": 10, "backoff_base_s": 0.05, "backoff_max_s": 0.5}
    data["topics"]["file"] = str(CONFIG_DIR / data["topics"]["file"])
    data["run"]["output_dir"] = str(tmp_path / "out" / "quickstart")
    data["writer"] = {"flush_interval_s": 0.5}
    data["run"]["drain_timeout_s"] = 10
    # Fewer rows: the stub's replies are perturbed copies of one example per category, and it is
    # the display, not the volume, that is under test.
    data["categories"]["general"]["count"] = GENERAL
    data["categories"]["writing"]["count"] = WRITING
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_quickstart_prints_only_its_own_display_and_ends_with_next_steps(stub_teacher, tmp_path: Path) -> None:
    config_path = quickstart_on_the_stub(stub_teacher.base_url, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a newcomer's shell
    env["COLUMNS"] = "200"
    # `--address local`: a private Ray, as on a machine where nobody ran `ray start` (the test
    # machine may have one running for another test).
    command = [sys.executable, "-m", "instructflow.cluster.cli", "generate", "--config", str(config_path),
               "--address", "local"]
    started = time.time()
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        screen, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        kill_run(proc)  # its private Ray too
        pytest.fail(f"the quickstart did not end within 150 s:\n{proc.stdout.read() if proc.stdout else ''}")
    assert proc.returncode == 0, screen
    noise = [line for line in screen.splitlines() if NOISE.search(line)]
    assert noise == [], "library output on the quickstart's screen:\n" + "\n".join(noise)

    lines = screen.splitlines()
    summary = next(i for i, line in enumerate(lines) if "summary (complete)" in line)
    closing = next(i for i, line in enumerate(lines) if re.match(r"instructflow \d+ rows \(", line))
    # Before the summary: only instructflow's notes and progress lines; after it, the closing lines.
    strays = [line for line in lines[:summary] + lines[closing:] if not OWN.match(line)]
    assert strays == [], "lines that are not instructflow's own:\n" + "\n".join(strays)
    end = "\n".join(lines[closing:])
    assert lines[closing] == f"instructflow {GENERAL + WRITING} rows (general {GENERAL}, writing {WRITING}) in out/quickstart/"
    assert "out/quickstart/data/*.parquet" in end and "teacher tokens" in end
    assert "instructflow export out/quickstart" in end and "instructflow report out/quickstart" in end

    out = tmp_path / "out" / "quickstart"
    config = load_config(config_path)
    rows = pq.read_table(out / "data").to_pylist()
    assert len(rows) == GENERAL + WRITING
    assert column_violations(rows, Run.of(config, out, time.time())) == []
    assert all(row["created_at"].timestamp() >= started for row in rows)
