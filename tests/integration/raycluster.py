"""A real `ray start --head` on 127.0.0.1 for job-submission tests, stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalHead:
    """`ray start --head` with auth disabled (set the same way for head, CLI and drivers)."""

    def __init__(self, tmp: Path, num_cpus: int = 4) -> None:
        self.bin = Path(sys.executable).parent
        self.port, self.dashboard_port, self.metrics_port = free_port(), free_port(), free_port()
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.tmp = tmp
        self.num_cpus = num_cpus

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def ray(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin / "ray"), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=check,
        )

    def __enter__(self) -> LocalHead:
        self.ray(
            "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            f"--metrics-export-port={self.metrics_port}", f"--num-cpus={self.num_cpus}",
            "--disable-usage-stats", "--include-dashboard=true",
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.ray("job", "list", "--address", self.dashboard, check=False).returncode == 0:
                return self
            time.sleep(0.5)
        raise TimeoutError(f"the Ray dashboard at {self.dashboard} did not answer within 60 s")

    def __exit__(self, *exc: object) -> None:
        self.ray("stop", "--force", check=False, timeout=60)

    def submit(self, entrypoint: list[str], *, wait: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        import json

        runtime_env = {"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "60", "RAY_AUTH_MODE": "disabled", **(env or {})}}
        args = ["job", "submit", "--address", self.dashboard, "--runtime-env-json", json.dumps(runtime_env)]
        if not wait:
            args.append("--no-wait")
        return self.ray(*args, "--", *entrypoint, timeout=600, check=False)
