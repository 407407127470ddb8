"""Fires a soak plan's events at a running CLI: actor kills, 429 bursts, the whole-run kill."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from instructflow.config import load_config
from tests.integration.dataset_checks import committed_rows
from tests.integration.processes import alive_actor_pids, gcs_address, kill_run, session_pids
from tests.soak.plan import Event

# An actor not alive when its kill is due (not created yet, or restarting) is looked for again every
# RETRY_S, for up to ACTOR_WAIT_S.
ACTOR_WAIT_S = 60.0
RETRY_S = 0.5
POLL_S = 0.05


class Interrupted(Exception):
    """The run went past its wall-clock limit."""


class Injector:
    """The events still to fire, what was injected (in order), and the 429 burst in progress.

    Args:
        events: the plan's schedule; survives from one CLI process to the next (the resume).
        stub: the running `StubTeacher`.
        out: the run's output directory (its manifest says how many rows are committed).
        config: the run's config file (for the run id in the actors' names).
    """

    def __init__(self, events: list[Event], stub: Any, out: Path, config: Path) -> None:
        import instructflow.instructors.categories  # noqa: F401  (registers the config's categories)
        from instructflow.actors.limiter import gate_name

        cfg = load_config(config)
        self.names = {e.role: f"{cfg.run_id}/{e.role}" for e in events if e.kind == "kill"}
        if "teacher-limiter" in self.names:
            self.names["teacher-limiter"] = gate_name(cfg.teacher.base_url, cfg.teacher.model, cfg.run_id)
        self.pending = list(events)
        self.stub, self.out = stub, out
        self.due: dict[int, float] = {}  # id(event) -> when it fires
        self.retry: dict[int, float] = {}  # id(event) -> when to look for its actor again
        self.injected: list[str] = []
        self.skipped: list[str] = []
        self.burst_until: float | None = None

    def drive(self, proc: subprocess.Popen, deadline: float) -> int | None:
        """Fires due events while the CLI runs. Returns its exit code, or None once the whole run
        was killed (the caller then runs the same command again)."""
        while proc.poll() is None:
            now = time.monotonic()
            if now > deadline:
                raise Interrupted(f"still running at its wall-clock limit ({committed_rows(self.out)} rows)")
            if self.burst_until is not None and now >= self.burst_until:
                self.stub.set_faults(p_429=0.0)
                self.burst_until = None
            rows, served = committed_rows(self.out), self.stub.stats()["requests"]
            for event in list(self.pending):
                when = self.due.setdefault(id(event), now + event.delay_s) if served >= event.at_requests else None
                if when is None or now < max(when, self.retry.get(id(event), 0.0)):
                    continue
                if not self._fire(event, proc, rows, late=now - when):
                    self.retry[id(event)] = now + RETRY_S
                    continue
                self.pending.remove(event)
                if event.kind == "job":
                    return None
            time.sleep(POLL_S)  # polling the stub and the manifest, bounded by the deadline
        return proc.returncode

    def close(self) -> None:
        """Ends a burst still in progress; events the run never reached count as skipped."""
        self.stub.set_faults(p_429=0.0)
        self.burst_until = None
        self.skipped += [f"{e.describe()}: the run ended first" for e in self.pending]
        self.pending = []

    def _fire(self, event: Event, proc: subprocess.Popen, rows: int, late: float) -> bool:
        """Injects `event`; False to try again on the next poll (its actor is not alive yet)."""
        if event.kind == "429":
            self.stub.set_faults(p_429=event.p_429, retry_after_s=event.retry_after_s)
            self.burst_until = time.monotonic() + event.duration_s
        elif event.kind == "job":
            kill_run(proc)
        else:
            pid = self._actor_pid(proc, self.names[event.role])
            if pid is None:
                if late > ACTOR_WAIT_S:
                    self.skipped.append(f"{event.describe(rows)}: not alive for {ACTOR_WAIT_S:.0f} s")
                    return True
                return False
            os.kill(pid, signal.SIGKILL)
        self.injected.append(event.describe(rows))
        return True

    @staticmethod
    def _actor_pid(proc: subprocess.Popen, name: str) -> int | None:
        """The worker pid of the live actor `name` in the CLI's private Ray, if it is one of the
        CLI's processes (never anything else on this machine)."""
        import grpc

        address = gcs_address(proc.pid)
        if address is None:
            return None
        try:
            pid = alive_actor_pids(address).get(name)
        except grpc.RpcError:  # the GCS is starting, or going down with the run
            return None
        return pid if pid in session_pids(proc.pid) else None
