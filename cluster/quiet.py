"""Library output that a user can do nothing about, handled where it starts.

A first run should show instructflow's own display and nothing else. Two things Ray prints on every
local run are noise for an instructflow user:

- "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out":
  Ray warns when it picks its default (token auth) for a new local cluster because RAY_AUTH_MODE is
  unset. instructflow makes the same choice explicit for a cluster it starts itself, which is what
  silences the warning; a user who set RAY_AUTH_MODE keeps their setting.
- "(raylet) WARNING: N PYTHON worker processes have been started on node ... which is 4x the
  maximum expected startup concurrency": the raylet's advice about many actors on few CPUs. A run
  is many small actors by design (one process each, fractional CPUs), so on a laptop this fires on
  every run. That one advisory is dropped from what the driver prints; the raylet still logs it to
  its own log file, and every other raylet message (out-of-memory kills, dead workers) still shows.

Serve's "ServeController.graceful_shutdown failed" line is fixed at its cause instead, in
`actors.teacher_serve` (Serve is shut down and awaited before Ray is).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

log = logging.getLogger(__name__)

AUTH_MODE_VAR = "RAY_AUTH_MODE"
# Ray's default for a cluster that `ray.init()` starts: token authentication.
LOCAL_AUTH_MODE = "token"
_WORKER_POOL_ADVISORY = re.compile(r"worker processes have been started on node\b.*startup concurrency")


def prepare_ray(*, starts_cluster: bool) -> None:
    """Call before `ray.init`. `starts_cluster`: this process starts a new local Ray (rather than
    joining one, whose auth mode is its operator's choice and must not be guessed here)."""
    if starts_cluster and AUTH_MODE_VAR not in os.environ:
        os.environ[AUTH_MODE_VAR] = LOCAL_AUTH_MODE
        _reload_ray_config()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    drop_worker_pool_advisory()


def _reload_ray_config() -> None:
    """Makes this process's Ray read RAY_AUTH_MODE again: its C++ config may have been read already
    (when `ray` was imported), and the GCS that `ray.init` starts would then expect a token this
    driver does not send. Ray does the same when it picks token auth itself."""
    try:
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError):  # a Ray without it reads the variable at ray.init
        pass


def is_worker_pool_advisory(data: dict[str, Any]) -> bool:
    """True for the raylet's "N PYTHON worker processes have been started" message as the driver
    receives it (a dict with `pid` "raylet" and its `lines`)."""
    lines = data.get("lines") or []
    return data.get("pid") == "raylet" and bool(lines) and all(_WORKER_POOL_ADVISORY.search(x) for x in lines)


def drop_worker_pool_advisory() -> None:
    """Stops the driver from printing the raylet's worker-pool advisory (see the module docstring).

    Ray prints messages the raylet pushes to the driver through `ray._private.worker.
    print_to_stdstream`; that function is wrapped here, before `ray.init` binds it. Idempotent. On a
    Ray whose internals differ, nothing is changed (the message then shows, as it always did).
    """
    try:
        from ray._private import worker
    except ImportError:
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_drops_worker_pool_advisory", False):
        return

    def print_to_stdstream(data: dict[str, Any], ignore_prefix: bool = False) -> Any:
        if is_worker_pool_advisory(data):
            log.debug("raylet: %s", " ".join(data.get("lines") or []))
            return None
        return original(data, ignore_prefix=ignore_prefix)

    print_to_stdstream._drops_worker_pool_advisory = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stdstream
