"""Small real output roots for export and merge tests: parts committed by the real PartWriter, plus
the side files the driver writes (``run.json``, ``config.effective.yaml``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate

DIM = 8


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    """A random unit vector; different seeds are nearly orthogonal only in high dimensions, so tests
    that need "far apart" vectors use `basis` instead."""
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def basis(i: int, dim: int = DIM) -> np.ndarray:
    """The i-th standard basis vector: cosine 0 to every other basis vector."""
    return np.eye(dim, dtype=np.float32)[i % dim]


def near(vector: np.ndarray, cosine: float, seed: int = 0) -> np.ndarray:
    """A unit vector at exactly `cosine` similarity to unit `vector`."""
    other = unit(seed + 10_000, len(vector))
    other -= other.dot(vector) * vector
    other /= np.linalg.norm(other)
    return (cosine * vector + np.sqrt(1 - cosine**2) * other).astype(np.float32)


def row(
    text: str,
    vector: np.ndarray | None,
    *,
    category: str = "general",
    system: str | None = None,
    score: float | None = None,
    response: str | None = None,
) -> Candidate:
    return Candidate(
        category=category,
        instruction=text,
        response=response or f"Answer to: {text}",
        system=system,
        model="stub-teacher",
        prompt_tokens=10,
        completion_tokens=20,
        score=score,
        embedding=vector,
        created_at=1_700_000_000.0,
    )


def make_run(
    root: Path,
    rows: list[Candidate],
    *,
    rows_per_part: int = 3,
    run_id: str = "run-test",
    teacher: str = "stub-teacher",
    model: str = "all-MiniLM-L6-v2",
    threshold: float = 0.9,
) -> Path:
    """Commits `rows` under `root` in parts of `rows_per_part`, and writes the driver's side files."""
    writer = PartWriter(str(root), rows_per_part=rows_per_part, run_id=run_id)
    writer.add(rows)
    writer.close()
    (root / "run.json").write_text(json.dumps({"run_id": run_id}))
    config = {"teacher": {"model": teacher}, "novelty": {"model": model, "threshold": threshold}}
    (root / "config.effective.yaml").write_text(yaml.safe_dump(config))
    return root
