"""A real `ray start --head` on 127.0.0.1 for job-submission tests, stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace_s: float = 3) -> None:
    """SIGTERM to the process group of `proc`, then SIGKILL if it is still there after `grace_s`."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            # children may outlive the leader for a moment; make sure the group is gone
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def address_record() -> Path:
    """Where `ray start` records its cluster for later `ray.init()` calls (`/tmp/ray/ray_current_cluster`)."""
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


class LocalHead:
    """`ray start --head` with auth disabled (set the same way for head, CLI and drivers)."""

    def __init__(self, tmp: Path, num_cpus: int = 4) -> None:
        self.bin = Path(sys.executable).parent
        self.port, self.dashboard_port, self.metrics_port = free_port(), free_port(), free_port()
        # Ray's fixed defaults (agent HTTP 52365, client server 10001) collide with any other Ray on
        # the machine: the second head's job agent cannot bind and every submission then fails with
        # "No available agent". Free ports for both keep concurrent heads apart.
        self.agent_port, self.client_port = free_port(), free_port()
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
        # --block keeps `ray start` in the foreground as the parent of the head's processes, all in
        # one new process group: stopping the group stops this head only (`ray stop` would also
        # stop every other Ray on the machine, such as the test session's own).
        # Killing the group skips `ray stop`, which would clear Ray's record of this head; without
        # it a later `ray.init()` on this machine would try to join a head that is gone.
        record = address_record()
        self.record_before = record.read_text() if record.exists() else None
        self.log = open(self.tmp / "ray-start.log", "w")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(
            [str(self.bin / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
             f"--port={self.port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
             f"--metrics-export-port={self.metrics_port}", f"--num-cpus={self.num_cpus}",
             f"--dashboard-agent-listen-port={self.agent_port}", f"--ray-client-server-port={self.client_port}",
             "--disable-usage-stats", "--include-dashboard=true"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}; see {self.tmp / 'ray-start.log'}")
            if self.ray("job", "list", "--address", self.dashboard, check=False).returncode == 0:
                return self
            time.sleep(0.5)
        self.__exit__()
        raise TimeoutError(f"the Ray dashboard at {self.dashboard} did not answer within 90 s")

    def __exit__(self, *exc: object) -> None:
        stop_group(self.proc)
        self.log.close()
        record = address_record()
        if record.exists() and record.read_text() != self.record_before:
            if self.record_before is None:
                record.unlink()
            else:
                record.write_text(self.record_before)

    def submit(self, entrypoint: list[str], *, wait: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        import json

        runtime_env = {"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "60", "RAY_AUTH_MODE": "disabled", **(env or {})}}
        args = ["job", "submit", "--address", self.dashboard, "--runtime-env-json", json.dumps(runtime_env)]
        if not wait:
            args.append("--no-wait")
        return self.ray(*args, "--", *entrypoint, timeout=600, check=False)

    # -- job helpers: submit once the job agent answers, follow a job over the dashboard's REST API --
    def submit_when_ready(
        self,
        entrypoint: list[str],
        *,
        wait: bool = True,
        env: dict | None = None,
        submission_id: str | None = None,
        agent_timeout_s: float = 90,
    ) -> subprocess.CompletedProcess:
        """`ray job submit` like `submit`, retried while the head says "No available agent".

        The dashboard answers `ray job list` some seconds before its job agent takes submissions (on a
        loaded machine, tens of seconds); until then a submission fails with HTTP 500.
        """
        import json

        runtime_env = {"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "60", "RAY_AUTH_MODE": "disabled", **(env or {})}}
        args = ["job", "submit", "--address", self.dashboard, "--runtime-env-json", json.dumps(runtime_env)]
        if submission_id:
            args += ["--submission-id", submission_id]
        if not wait:
            args.append("--no-wait")
        deadline = time.monotonic() + agent_timeout_s
        while True:
            done = self.ray(*args, "--", *entrypoint, timeout=600, check=False)
            if "No available agent" not in done.stdout + done.stderr or time.monotonic() > deadline:
                return done
            time.sleep(1)  # polling interval while the agent starts, not synchronisation

    def _get(self, path: str) -> bytes:
        import urllib.request

        with urllib.request.urlopen(self.dashboard + path, timeout=30) as reply:
            return reply.read()

    def job_status(self, submission_id: str) -> str:
        """The job's status (PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED) from the REST API."""
        import json

        return json.loads(self._get(f"/api/jobs/{submission_id}"))["status"]

    def job_logs(self, submission_id: str) -> str:
        """Everything the job's entrypoint wrote so far."""
        import json

        return json.loads(self._get(f"/api/jobs/{submission_id}/logs"))["logs"]

    def wait_job(self, submission_id: str, timeout_s: float, until: tuple[str, ...] = ("STOPPED", "SUCCEEDED", "FAILED")) -> str:
        """Polls the job's status until it is one of `until`; raises TimeoutError naming the last one."""
        deadline = time.monotonic() + timeout_s
        status = self.job_status(submission_id)
        while status not in until:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {submission_id} still {status} after {timeout_s:.0f} s (wanted {until})")
            time.sleep(0.5)
            status = self.job_status(submission_id)
        return status

    def scrape_metrics(self) -> str:
        """The text of this node's Prometheus endpoint (`--metrics-export-port`)."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as reply:
            return reply.read().decode()
