"""A synthetic finished run for the report tests: parts committed by the real PartWriter, rejects
logged through it, and the side files the driver writes (run.json, config.effective.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.record import Candidate

DIM = 384  # the novelty model's size, so a reference embedded by the real model fits
CATEGORIES = ("general", "trivia", "coding", "writing")
WORDS = ["river", "stone", "lamp", "orbit", "violin", "garden", "copper", "signal", "harbor", "lemon", "thunder", "atlas", "maple", "quartz"]


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def near(vector: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly `cosine` similarity to unit `vector`."""
    other = unit(rng, len(vector))
    other -= other.dot(vector) * vector
    other /= np.linalg.norm(other)
    return (cosine * vector + np.sqrt(1 - cosine**2) * other).astype(np.float32)


def sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, words))


def make_run(
    root: Path, rows: int = 200, clusters: tuple[int, ...] = (6, 4, 3), seed: int = 0, scored: bool = True
) -> dict:
    """Writes a finished run of `rows` rows under `root`; returns what it put there.

    The first rows form near-duplicate clusters of the given sizes (each member at cosine 0.97 to
    the cluster's first row; random 384-d unit vectors are otherwise about 0.05 apart). Rows have
    judge scores, tokens and a dated model name that matches a priced prefix.
    """
    rng = np.random.default_rng(seed)
    vectors: list[np.ndarray] = []
    for size in clusters:
        head = unit(rng)
        vectors += [head] + [near(head, 0.97, rng) for _ in range(size - 1)]
    vectors += [unit(rng) for _ in range(rows - len(vectors))]
    writer = PartWriter(str(root), rows_per_part=50, run_id="synthetic01")
    candidates = []
    for i, vector in enumerate(vectors):
        candidates.append(Candidate(
            category=CATEGORIES[i % len(CATEGORIES)],
            instruction=f"Task {i}: {sentence(rng, 4 + i % 17)}?",
            response=sentence(rng, 10 + (i * 7) % 90),
            model="gpt-4o-mini-2024-07-18",
            prompt_tokens=100 + i % 50,
            completion_tokens=200 + (i * 3) % 300,
            score=float(5 + i % 6) if scored else None,
            similarity=0.3,
            embedding=vector,
        ))
    writer.add(candidates)
    rejects = {"near_duplicate": 7, "refusal": 3, "low_score": 2}
    for reason, count in rejects.items():
        for j in range(count):
            writer.reject(Candidate(category=CATEGORIES[j % 2], instruction=f"rejected {reason} {j}"), reason)
    writer.close()
    targets = {c: rows // len(CATEGORIES) + 5 for c in CATEGORIES}
    (root / "run.json").write_text(json.dumps({"run_id": "synthetic01", "targets": targets, "history": []}))
    config = {
        "novelty": {"model": "all-MiniLM-L6-v2", "threshold": 0.9},
        "judge": {"llm": {"enabled": True, "threshold": 6.0}},
        "teacher": {"budget": {"prices": {"gpt-4o-mini": {"prompt_per_1k": 0.00015, "completion_per_1k": 0.0006}}}},
    }
    (root / "config.effective.yaml").write_text(yaml.safe_dump(config))
    return {"rows": rows, "clusters": clusters, "rejects": rejects, "targets": targets, "candidates": candidates}


def write_seed_tasks(path: Path, tasks: int = 30, seed: int = 1) -> Path:
    """A reference file in the Self-Instruct seed-task layout."""
    rng = np.random.default_rng(seed)
    with path.open("w") as out:
        for i in range(tasks):
            record = {
                "id": f"seed_task_{i}",
                "name": f"task_{i}",
                "instruction": f"Seed {i}: {sentence(rng, 5)}.",
                "instances": [{"input": sentence(rng, 3) if i % 2 else "", "output": sentence(rng, 8 + i % 20)}],
                "is_classification": bool(i % 3 == 0),
            }
            out.write(json.dumps(record) + "\n")
    return path


def hashing_encoder(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in for the novelty model: a unit vector seeded by each text."""
    import hashlib

    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        out[i] = unit(np.random.default_rng(seed))
    return out
