"""The CLI as a subprocess, for tests that kill it: its command line and environment, the processes
of its session (its private Ray included), and the pids of its run's actors.

A CLI started with `--address local` and `start_new_session=True` owns one session: its raylet, GCS
and every worker process are in it (Ray puts each worker in a process group of its own, but not in
a session of its own), so the session is what to kill, and the only place to look for pids.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

NAMESPACE = "instructflow"


def command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "instructflow.cluster.cli", "generate", "--config", str(config),
            "--address", "local", "--display", "plain", *extra]


def cli_env() -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "250"}
    env.pop("RAY_ADDRESS", None)
    return env


def session_pids(sid: int) -> list[int]:
    """Running processes of session `sid` (zombies do not count)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL to every process of the CLI's session -- its Ray's raylet, GCS and workers included
    (Ray puts each worker in a process group of its own, so killing the CLI's group alone leaves
    the actors running, and committing, until they notice their raylet is gone). Returns once all
    of them are gone."""
    deadline = time.monotonic() + 30
    while pids := session_pids(proc.pid):
        assert time.monotonic() < deadline, f"processes {pids} of the run survived SIGKILL"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)  # polling, bounded by the deadline
    proc.wait(30)


def run_cli(argv: list[str], log_path: Path, deadline_s: float,
            kill_when: Callable[[], bool] | None = None) -> tuple[int, str]:
    """Runs the CLI (`argv`, in a session of its own) to its end, or SIGKILLs the whole run
    (`kill_run`) as soon as `kill_when()` holds. Returns the exit code (-9 when killed) and the
    output; fails when the CLI runs past `deadline_s`."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=cli_env(), start_new_session=True)
        try:
            deadline = time.monotonic() + deadline_s
            while proc.poll() is None and time.monotonic() < deadline:
                if kill_when is not None and kill_when():
                    kill_run(proc)
                    break
                time.sleep(0.02)  # polling, bounded by the deadline
        finally:
            timed_out = proc.poll() is None
            kill_run(proc)
    output = log_path.read_text()
    assert not timed_out, f"the CLI ran past {deadline_s:.0f} s:\n{output[-3000:]}"
    return proc.returncode, output


def gcs_address(sid: int) -> str | None:
    """The GCS address of the private Ray that the CLI of session `sid` started (None until its
    raylet is up): every Ray process of the session names it on its command line."""
    for pid in session_pids(sid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in args:
            if arg.startswith(b"--gcs-address="):
                return arg.split(b"=", 1)[1].decode()
    return None


def alive_actor_pids(address: str, timeout_s: float = 5.0) -> dict[str, int]:
    """Name -> worker pid of every live named actor in the `instructflow` namespace, read from the
    GCS over gRPC: no Ray driver is started here, so nothing in this process depends on that Ray
    (which the caller may SIGKILL at any moment)."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    from ray.core.generated.gcs_pb2 import ActorTableData

    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.ActorInfoGcsServiceStub(channel)
        reply = stub.GetAllActorInfo(gcs_service_pb2.GetAllActorInfoRequest(), timeout=timeout_s)
    return {
        a.name: a.pid for a in reply.actor_table_data
        if a.name and a.ray_namespace == NAMESPACE and a.state == ActorTableData.ALIVE and a.pid
    }
