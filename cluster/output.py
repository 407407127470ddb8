"""The run's output location: checked before anything starts, stamped with the effective config.

`run.json` holds the run id (the config hash). A second run into the same location with the same
config resumes; with a different config it is refused unless the user asks for it explicitly, since
mixing rows from two configs in one dataset is rarely what anyone wants.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from pyarrow import fs

from instructflow.actors.core.storage import open_store
from instructflow.config import Config, ConfigError


def resolve(location: str) -> tuple[fs.FileSystem, str, str]:
    """(filesystem, path inside it, URI) for a local path or a `file://`, `s3://`, `gs://` URI."""
    if "://" not in location:
        location = str(Path(location).expanduser().resolve())
    try:
        filesystem, path = fs.FileSystem.from_uri(location)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError with a useful message
        raise ConfigError(f"run.output_dir: cannot use {location!r}: {exc}") from None
    uri = location if "://" in location else path
    return filesystem, path, uri


def _remove_quietly(filesystem: fs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):
        filesystem.delete_file(path)


@dataclass
class OutputDir:
    filesystem: fs.FileSystem
    path: str
    uri: str
    run_id: str
    resumed: bool

    @classmethod
    def open(cls, config: Config, *, allow_config_change: bool = False) -> OutputDir:
        """Creates or reopens the output location; raises ConfigError when it cannot be used."""
        filesystem, path, uri = resolve(config.run.output_dir)
        try:
            filesystem.create_dir(path, recursive=True)
            probe = f"{path}/.write-probe-{uuid.uuid4().hex[:8]}"
            try:
                with filesystem.open_output_stream(probe) as stream:
                    stream.write(b"ok")
            finally:
                _remove_quietly(filesystem, probe)  # also when the disk is full: no litter
        except OSError as exc:
            raise ConfigError(f"run.output_dir: {uri} is not writable: {exc}") from None
        previous = cls._read_run(filesystem, f"{path}/run.json")
        resumed = previous is not None
        if previous and previous.get("run_id") != config.run_id and not allow_config_change:
            raise ConfigError(
                f"run.output_dir: {uri} holds run {previous.get('run_id')} made with a different config "
                f"(this config is run {config.run_id}). Use a new output_dir, or pass "
                "--allow-config-change to add rows made with the new config to the same dataset."
            )
        history = (previous or {}).get("history", [])
        if previous and previous.get("run_id") != config.run_id:
            history.append({"run_id": previous.get("run_id"), "until": time.time()})
        record = {
            "run_id": config.run_id,
            "started_at": time.time(),
            "targets": {n: p.count for n, p in config.categories.items()},
            "history": history,
        }
        effective = yaml.safe_dump(config.effective(), sort_keys=False).encode()
        store = open_store(path, filesystem)
        try:  # the probe fit, but these may not (a nearly full disk)
            store.write_atomic("run.json", json.dumps(record, indent=2).encode())
            store.write_atomic("config.effective.yaml", effective)
        except OSError as exc:
            raise ConfigError(f"run.output_dir: {uri} is not writable: {exc}") from None
        return cls(filesystem, path, uri, config.run_id, resumed)

    @staticmethod
    def _read_run(filesystem: fs.FileSystem, path: str) -> dict | None:
        if filesystem.get_file_info(path).type == fs.FileType.NotFound:
            return None
        try:
            with filesystem.open_input_stream(path) as stream:
                return json.loads(stream.read())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable run record ({exc}); move it away to start afresh") from None
