"""Bad input through the real command line: one clear error naming the file, key and cause, a
non-zero exit, no traceback, no Ray started for what can be checked first, and nothing already
committed lost or changed (unwritable and full output directories holding a finished run)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.config import Config, load_config
from tests.conftest import REPO
from tests.integration.conftest import stub_config
from tests.prerequisites import unavailable

CLI_TIMEOUT_S = 300  # a whole run with a private Ray; input errors take seconds


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    seconds: float
    ray_started: bool  # whether Ray wrote anything under the run's RAY_TMPDIR

    @property
    def messages(self) -> list[str]:
        """The CLI's own messages on stderr: an `instructflow:` line and its indented details
        (Ray's actor logs and warnings excluded)."""
        found: list[str] = []
        inside = False
        for line in self.stderr.splitlines():
            if line.startswith("instructflow:"):
                found.append(line)
            elif inside and line.startswith("  "):
                found[-1] += "\n" + line
                continue
            inside = line.startswith("instructflow:")
        return found


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT_S) -> CliResult:
    """Runs `python -m instructflow.cluster.cli ARGS` in a subprocess with its own Ray temp dir
    (short, under /tmp: Ray's socket paths must stay under 108 bytes)."""
    ray_dir = Path(tempfile.mkdtemp(prefix="ifray-", dir="/tmp"))
    full_env = {**os.environ, "RAY_TMPDIR": str(ray_dir), "COLUMNS": "200", **(env or {})}
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "instructflow.cluster.cli", *args],
            capture_output=True, text=True, env=full_env, cwd=REPO, timeout=timeout,
        )
        ray_started = any(ray_dir.iterdir())
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    return CliResult(done.returncode, done.stdout, done.stderr, time.monotonic() - started, ray_started)


def assert_one_clear_error(result: CliResult, code: int, *fragments: str) -> str:
    """Exit `code`, exactly one `instructflow:` line holding every fragment, and no traceback."""
    assert result.code == code, f"exit {result.code}, expected {code}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert len(result.messages) == 1, result.stderr[-3000:]
    message = result.messages[0]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def base_config(out: Path, **general: Any) -> dict[str, Any]:
    """A valid config whose teacher is never reached (nothing here gets that far)."""
    return {
        "run": {"output_dir": str(out), "display": "plain"},
        "teacher": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "stub", "api_key_env": None,
                    "timeout_s": 2, "max_attempts": 1},
        "topics": {"file": None},
        "categories": {"general": {"count": 4, **general}},
    }


def write(path: Path, data: dict[str, Any] | str | bytes) -> Path:
    if isinstance(data, dict):
        data = yaml.safe_dump(data, sort_keys=False)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# -- config files, templates, topics and seed files: refused before Ray starts ------------------------

def malformed_yaml(d: Path) -> tuple[Path, list[str]]:
    cfg = write(d / "run.yaml", "run: {output_dir: out\ncategories:\n  general: {count: 4}\n")
    return cfg, [f"{cfg}:", "not valid YAML"]


def unknown_key(d: Path) -> tuple[Path, list[str]]:
    cfg = write(d / "run.yaml", base_config(d / "out", colour="red"))
    return cfg, [f"{cfg}:", "categories.general.colour", "unknown key"]


def wrong_type(d: Path) -> tuple[Path, list[str]]:
    data = base_config(d / "out")
    data["teacher"]["timeout_s"] = "soon"
    cfg = write(d / "run.yaml", data)
    return cfg, [f"{cfg}:", "teacher.timeout_s", "valid number"]


def undeclared_template_variable(d: Path) -> tuple[Path, list[str]]:
    prompts = d / "prompts"
    prompts.mkdir()
    packaged = (REPO / "prompts" / "general.j2").read_text()
    write(prompts / "general.j2", packaged + "\nAnswer in the mood of {{ mood }}.\n")
    data = base_config(d / "out")
    data["run"]["prompts_dir"] = str(prompts)
    cfg = write(d / "run.yaml", data)
    return cfg, [str(prompts / "general.j2"), "undeclared variable", "mood", "categories.general"]


def topics_case(content: bytes | None) -> Callable[[Path], tuple[Path, list[str]]]:
    def make(d: Path) -> tuple[Path, list[str]]:
        topics = d / "topics.txt"
        if content is None:
            topics.mkdir()  # exists but cannot be read as a file (root reads anything chmod-ed)
        else:
            write(topics, content)
        data = base_config(d / "out")
        data["topics"]["file"] = str(topics)
        cfg = write(d / "run.yaml", data)
        cause = {None: "Is a directory", b"": "no usable topic"}.get(content, "can't decode")
        return cfg, ["topics.file", str(topics), cause]
    return make


def seed_case(content: bytes | None, cause: str) -> Callable[[Path], tuple[Path, list[str]]]:
    def make(d: Path) -> tuple[Path, list[str]]:
        seeds = d / "seeds.jsonl"
        if content is not None:
            write(seeds, content)
        cfg = write(d / "run.yaml", base_config(d / "out", seed_file=str(seeds)))
        return cfg, ["categories.general", str(seeds), cause]
    return make


def output_under_a_file(d: Path) -> tuple[Path, list[str]]:
    write(d / "a-file", "not a directory")
    cfg = write(d / "run.yaml", base_config(d / "a-file" / "out"))
    return cfg, ["run.output_dir", str(d / "a-file" / "out"), "Not a directory"]


CASES = {
    "malformed YAML": malformed_yaml,
    "unknown key": unknown_key,
    "wrong type": wrong_type,
    "template with an undeclared variable": undeclared_template_variable,
    "topics file empty": topics_case(b""),
    "topics file unreadable (a directory)": topics_case(None),
    "topics file not UTF-8": topics_case(b"\xff\xfe tides\n"),
    "seed file missing": seed_case(None, "No such file or directory"),
    "seed file empty": seed_case(b"", "has no tasks"),
    "seed file malformed": seed_case(b'{"instruction": "Plan a picnic for six people."}\n{oops\n', "seeds.jsonl:2: not JSON"),
    "output directory under a regular file": output_under_a_file,
}


@pytest.mark.fault(
    fault="bad input: {case}",
    expected="exit 2 with one line naming the file, key and cause; no traceback; Ray never started",
)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_error_before_ray_starts(case: str, tmp_path: Path) -> None:
    config, fragments = CASES[case](tmp_path)
    result = cli("generate", "--config", str(config), timeout=60)
    assert_one_clear_error(result, 2, *fragments)
    assert not result.ray_started, "Ray started before the input was checked"
    assert "starting Ray" not in result.stdout
    assert not (tmp_path / "out").exists()  # nothing created for a run that cannot start


# -- output directories that hold a finished run ------------------------------------------------------

def committed_run(config: Config, rows: int) -> None:
    """A finished run in `config`'s output directory, written by the real writer (no Ray, no
    teacher): parts, manifest, run record and effective config, as the pipeline leaves them."""
    from instructflow.actors.core.writer import PartWriter
    from instructflow.cluster.output import OutputDir
    from instructflow.instructors.record import Candidate

    out = OutputDir.open(config)
    writer = PartWriter(out.uri, rows_per_part=8, run_id=config.run_id, exports=["jsonl"])
    rng = np.random.default_rng(0)
    candidates = []
    for i in range(rows):
        vector = rng.normal(size=384).astype(np.float32)
        candidates.append(Candidate(
            category="general", instruction=f"Describe landmark number {i} to a visitor who has one hour.",
            response=f"Start at the north gate of landmark {i}, then follow the river path.",
            embedding=vector / np.linalg.norm(vector),
        ))
    writer.add(candidates)
    writer.close()


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256): what must survive byte for byte."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _mount(*args: str) -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def mounted(path: Path, *args: str) -> Iterator[Path]:
    path.mkdir(exist_ok=True)
    if not _mount(*args, str(path)):
        unavailable(f"cannot mount here ({' '.join(args)}): needs root with CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(root: Path, leave: int = 0) -> None:
    """Fills the file system of `root` until about `leave` bytes are free (0: writes until ENOSPC)."""
    with open(root / "filler", "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            stat = os.statvfs(root)
            room = stat.f_bavail * stat.f_frsize - leave
            if leave and room <= 0:
                break
            handle.write(b"\0" * max(1, min(room, 1 << 20) if leave else 1 << 16))


def finished_run_config(root: Path, count: int, rows: int) -> Path:
    """A config writing to `root/out`, and a finished run of `rows` rows already there."""
    cfg = write(root.parent / "run.yaml", base_config(root / "out", count=count))
    committed_run(load_config(cfg), rows)
    return cfg


@pytest.mark.fault(
    fault="output directory on a read-only mount, holding a finished run",
    expected="exit 2 naming run.output_dir and the cause; no Ray; every file byte-identical",
)
def test_read_only_output_directory_keeps_the_finished_run(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    finished_run_config(source, count=40, rows=20)
    with mounted(tmp_path / "ro", "--bind", "-o", "ro", str(source)) as ro:
        cfg_ro = write(tmp_path / "ro.yaml", base_config(ro / "out", count=40))  # the same run, read-only
        before = tree(ro)
        result = cli("generate", "--config", str(cfg_ro), timeout=60)
        assert_one_clear_error(result, 2, "run.output_dir", str(ro / "out"), "Read-only file system")
        assert not result.ray_started
        assert tree(ro) == before


@pytest.mark.fault(
    fault="output directory on a full disk (tmpfs), holding a finished run",
    expected="exit 2 naming run.output_dir and ENOSPC; no Ray; every file byte-identical, no litter",
)
def test_full_disk_before_start_keeps_the_finished_run(tmp_path: Path) -> None:
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=1m", "tmpfs") as root:
        cfg = finished_run_config(root, count=40, rows=20)
        fill(root)
        before = tree(root)
        result = cli("generate", "--config", str(cfg), timeout=60)
        assert_one_clear_error(result, 2, "run.output_dir", str(root / "out"), "No space left on device")
        assert not result.ray_started
        assert tree(root) == before


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.fault(
    fault="disk fills up mid-run (a resumed run on a nearly full tmpfs)",
    expected="exit 1 with one line naming the part file and ENOSPC; no traceback; the committed "
             "parts and manifest byte-identical and readable",
)
def test_disk_full_mid_run_keeps_what_was_committed(stub_teacher, tmp_path: Path) -> None:
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=2m", "tmpfs") as root:
        data = stub_config(stub_teacher, root / "out", {"general": {"count": 200, "batch_size": 5, "concurrency": 4}},
                           writer={"flush_interval_s": 5.0, "exports": ["jsonl"]})
        cfg = write(tmp_path / "run.yaml", data)
        committed_run(load_config(cfg), rows=20)
        kept = {k: v for k, v in tree(root / "out").items() if k.startswith("data/") or k == "manifest.jsonl"}
        # Room for the run record and effective config, not for a part of 16 rows with vectors.
        fill(root, leave=12 * 1024)
        result = cli("generate", "--config", str(cfg), "--address", "local")
        assert_one_clear_error(result, 1, "writer failed", str(root / "out" / "data"), "ENOSPC: No space left on device")
        after = tree(root / "out")
        assert {k: after.get(k) for k in kept} == kept
        assert not [k for k in after if k.startswith("data/") and k not in kept]  # no new or temp part
        assert pq.read_table(root / "out" / "data").num_rows == 20
