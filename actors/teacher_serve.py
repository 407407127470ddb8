"""The embedded teacher on Ray Serve: OpenAI-compatible HTTP on 127.0.0.1 around `LlamaEngine`.

`start_embedded_teacher(cfg)` deploys one replica and returns its base URL (e.g.
`http://127.0.0.1:8011/v1`) for the ordinary teacher client; `serve_forever(cfg)` backs the
`instructflow serve-teacher` command for users who point other tools at it.
"""

import contextlib
import json
import logging
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException

from instructflow.instructors.teacher.embedded.llama import (
    EmbeddedSettings,
    EngineRequestError,
    LlamaEngine,
    locate_model,
)

log = logging.getLogger(__name__)

APP_NAME = "instructflow-teacher"
ROUTE_PREFIX = "/v1"
# A share of a CPU for the scheduler, so the replica fits beside the pipeline's actors on 2 cores;
# llama.cpp still runs `threads` compute threads of its own.
REPLICA_NUM_CPUS = 0.5
READY_TIMEOUT_S = 120.0
_POLL_S = 0.2
_QUIET = {"log_level": "WARNING"}  # hides Serve's per-request access log lines


class ServeSettings(EmbeddedSettings, Protocol):
    """`config.Embedded`: the engine settings plus where to listen."""

    host: str
    port: int


@dataclass(frozen=True)
class _Settings:
    """A plain copy of the settings shipped to the replica (no config classes cross layers)."""

    model: str
    host: str
    port: int
    parallel: int
    context: int
    threads: int

    @classmethod
    def of(cls, cfg: "ServeSettings") -> "_Settings":
        return cls(cfg.model, cfg.host, cfg.port, cfg.parallel, cfg.context, cfg.threads)


# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime and
# Serve's ingress wrapper loses the module globals that string annotations would need.
api = FastAPI(title="instructflow embedded teacher", docs_url=None, redoc_url=None, openapi_url=None)


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(EngineRequestError(status, message, kind).body(), status_code=status)


@api.exception_handler(HTTPException)
async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    # Unknown routes and methods answer in the OpenAI error shape too, not FastAPI's {"detail"}.
    return _error(exc.status_code, str(exc.detail))


@serve.deployment(
    name="EmbeddedTeacher",
    num_replicas=1,
    ray_actor_options={"num_cpus": REPLICA_NUM_CPUS},
    max_constructor_retry_count=2,
    logging_config=_QUIET,
)
@serve.ingress(api)
class EmbeddedTeacher:
    """One replica holding one `LlamaEngine`."""

    def __init__(self, settings: _Settings) -> None:
        self.engine = LlamaEngine(settings)

    async def _answer(self, request: Request, call: Any) -> JSONResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the request body is not valid JSON")
        try:
            return JSONResponse(await call(body))
        except EngineRequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)

    @api.post("/chat/completions")
    async def chat_completions(self, request: Request) -> JSONResponse:
        """OpenAI `POST /v1/chat/completions` (non-streaming)."""
        return await self._answer(request, self.engine.chat)

    @api.post("/completions")
    async def completions(self, request: Request) -> JSONResponse:
        """OpenAI `POST /v1/completions` (non-streaming)."""
        return await self._answer(request, self.engine.completion)

    @api.get("/models")
    async def models(self) -> JSONResponse:
        """OpenAI `GET /v1/models`: the one model this replica serves."""
        return JSONResponse(self.engine.model_list())


def base_url(cfg: ServeSettings) -> str:
    """Where the teacher answers, e.g. `http://127.0.0.1:8011/v1`."""
    return f"http://{cfg.host}:{cfg.port}{ROUTE_PREFIX}"


def _serves_model(url: str, model: str) -> bool:
    """True when `url`/models answers and lists `model`."""
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as reply:
            listing = json.load(reply)
    except (OSError, ValueError):
        return False
    return any(item.get("id") == model for item in listing.get("data", []) if isinstance(item, dict))


def _check_http_port(settings: _Settings) -> None:
    """Fails fast when Serve already runs in this cluster with other HTTP options (it keeps them)."""
    try:
        client = serve.context._get_global_client(raise_if_no_controller_running=False)
        actual = client.http_config if client is not None else None
    except Exception:  # private API; without it the readiness wait still reports the problem
        return
    if actual is not None and (actual.host, actual.port) != (settings.host, settings.port):
        raise RuntimeError(
            f"Ray Serve already runs on this cluster at {actual.host}:{actual.port}, not "
            f"{settings.host}:{settings.port}; set teacher.embedded.port to {actual.port} or "
            "restart Serve (serve.shutdown())"
        )


@contextlib.contextmanager
def _quiet_serve_log() -> Iterator[None]:
    """Keeps Serve's driver-side INFO lines ("Started Serve", "Deleting app") off the terminal."""
    serve_log = logging.getLogger("ray.serve")
    level = serve_log.level
    serve_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        serve_log.setLevel(level)


def _deploy(settings: _Settings) -> None:
    with _quiet_serve_log():
        serve.start(http_options={"host": settings.host, "port": settings.port}, logging_config=_QUIET)
        _check_http_port(settings)
        app = EmbeddedTeacher.options(max_ongoing_requests=max(8, settings.parallel * 4)).bind(settings)
        target = serve.RunTarget(target=app, name=APP_NAME, route_prefix=ROUTE_PREFIX, logging_config=_QUIET)
        serve.run_many([target], wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)


def _wait_ready(settings: _Settings, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    state = "not deployed"
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP_NAME)
        if app is not None:
            state = f"{app.status}: {app.message}" if app.message else str(app.status)
            if app.status == "DEPLOY_FAILED":
                raise RuntimeError(f"the embedded teacher failed to deploy: {app.message}")
            if app.status == "RUNNING" and _serves_model(url, settings.model):
                return
        time.sleep(_POLL_S)  # bounded polling of an external process's state
    raise TimeoutError(
        f"the embedded teacher was not ready at {url} within {timeout_s:.0f} s (last status: {state}); "
        f"is port {settings.port} taken by another program?"
    )


def start_embedded_teacher(cfg: ServeSettings, *, timeout_s: float = READY_TIMEOUT_S) -> str:
    """Deploys the embedded teacher on the current Ray cluster and returns its base URL.

    Idempotent: if the model already answers at the URL (deployed earlier in this cluster, or a
    `serve-teacher` started elsewhere on this machine), it is reused as it is and nothing is deployed.

    Args:
        cfg: `teacher.embedded` of the run config.
        timeout_s: how long to wait until the model answers over HTTP.

    Raises:
        RuntimeError: Ray is not initialised, the deployment failed, or Serve listens elsewhere.
        TimeoutError: not ready in time (the message has the last status).
        ModelNotInstalled, ModelIntegrityError: the weights are missing or not the pinned file.
    """
    settings = _Settings.of(cfg)
    url = base_url(settings)
    if _serves_model(url, settings.model):
        return url
    if not ray.is_initialized():
        raise RuntimeError("start Ray (ray.init) before the embedded teacher")
    locate_model(settings.model)  # fail here, with the digest in the message, not in a replica
    _deploy(settings)
    _wait_ready(settings, url, timeout_s)
    log.info("embedded teacher %s ready at %s", settings.model, url)
    return url


def stop_embedded_teacher() -> None:
    """Deletes the teacher application; shuts Serve down if nothing else runs on it. Safe to repeat."""
    if not ray.is_initialized():
        return
    apps = serve.status().applications
    with _quiet_serve_log():
        if APP_NAME in apps:
            serve.delete(APP_NAME)
        if apps and not set(apps) - {APP_NAME}:
            _shutdown_serve()


def _shutdown_serve(timeout_s: float = 30.0) -> None:
    """Shuts Serve down and waits until its controller is gone.

    `serve.shutdown()` alone blocks on the controller's `graceful_shutdown` call while the
    controller kills itself, so Ray reports that call as failed on the driver's terminal
    ("ServeController.graceful_shutdown failed ... killed by `ray.kill`"). Here the controller is
    only told to shut down, its end is awaited, and `serve.shutdown()` is left nothing to do but
    drop its cached client.
    """
    try:
        from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        ray.get(controller.graceful_shutdown.remote(False), timeout=timeout_s)
    except (ImportError, ValueError, TypeError, ray.exceptions.RayError):
        # No controller (already gone), or a Serve whose private API differs: the plain way.
        serve.shutdown()
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:  # gone: every replica and proxy was stopped before it
            break
        time.sleep(_POLL_S)  # bounded polling of the controller's own shutdown
    serve.shutdown()


def serve_forever(cfg: ServeSettings, *, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Starts the teacher and blocks until SIGINT/SIGTERM; backs `instructflow serve-teacher`.

    Uses the connected Ray, else the cluster in RAY_ADDRESS, else starts a local one (no dashboard).
    Prints one line with the base URL; stops the teacher on exit.
    """
    if not ray.is_initialized():
        # RAY_ADDRESS picks an existing cluster; otherwise a private local one, never a cluster that
        # someone else happened to start on this machine.
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    url = start_embedded_teacher(cfg, timeout_s=timeout_s)
    print(f"embedded teacher {cfg.model} ready: base_url={url} model={cfg.model} (Ctrl-C stops it)", flush=True)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):  # a timed wait keeps the main thread responsive to signals
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_embedded_teacher()
