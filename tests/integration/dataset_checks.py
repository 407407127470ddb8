"""Checks a finished output directory against instructflow's promises, for the fault tests:
exactly the target per category, unique ids, no near-duplicates, every part intact and listed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tests.integration.conftest import read_manifest


def committed_rows(out: Path) -> int:
    """Rows the manifest lists (0 before the first commit; a torn last line is ignored)."""
    path = out / "manifest.jsonl"
    if not path.exists():
        return 0
    total = 0
    for line in path.read_text().splitlines():
        try:
            total += int(json.loads(line)["rows"])
        except (ValueError, KeyError):
            continue  # a line being appended right now
    return total


def read_parts(out: Path) -> list[dict[str, Any]]:
    """Every row of every committed part, after checking each part against its manifest entry."""
    entries = read_manifest(out)
    listed = {Path(e["file"]).name for e in entries}
    on_disk = {p.name for p in (out / "data").iterdir()}
    assert on_disk == listed, f"files in data/ not in the manifest (orphans): {sorted(on_disk - listed)}"
    rows: list[dict[str, Any]] = []
    for entry in entries:
        path = out / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], f"{path} changed after commit"
        table = pq.read_table(path)  # raises when a part is not readable Parquet
        assert table.num_rows == entry["rows"], f"{path}: {table.num_rows} rows, manifest says {entry['rows']}"
        rows.extend(table.to_pylist())
    return rows


def check_dataset(out: Path, targets: dict[str, int], threshold: float) -> list[dict[str, Any]]:
    """Asserts the promises on a finished run's output; returns its rows."""
    rows = read_parts(out)
    counts = {c: sum(r["category"] == c for r in rows) for c in targets}
    assert counts == targets, f"committed rows per category {counts}, targets {targets}"
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), f"{len(ids) - len(set(ids))} duplicate id(s)"
    vectors = np.array([r["embedding"] for r in rows], dtype=np.float32)
    assert vectors.shape == (len(rows), 384), f"stored embeddings have shape {vectors.shape}"
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
    assert sims[i, j] < threshold, (
        f"near-duplicates accepted (cosine {sims[i, j]:.3f} >= {threshold}): "
        f"{rows[i]['instruction']!r} / {rows[j]['instruction']!r}"
    )
    return rows


def sha256_of_parts(out: Path) -> dict[str, str]:
    """File name -> sha256 of every committed part (to prove a resume never rewrote one)."""
    return {Path(e["file"]).name: hashlib.sha256((out / e["file"]).read_bytes()).hexdigest() for e in read_manifest(out)}
