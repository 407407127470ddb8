"""The writer stage's recipe: a `PartWriter` on the output root, reporting commits as metrics.

One writer replica per run. If it dies, Ray rebuilds it from this recipe: the new `PartWriter`
reopens the output and recovers from the manifest, so committed rows survive; rows it held pending
were never recorded as accepted and are counted as lost (the driver makes them up).
"""

from __future__ import annotations

import time
from typing import Any

from instructflow.actors import metrics
from instructflow.actors.core.manifest import PartEntry
from instructflow.actors.core.writer import PartWriter
from instructflow.actors.core.writer_stage import WriterStage


def _report_commit(entry: PartEntry, seconds: float, tokens: dict[str, int]) -> None:
    metrics.observe("commit_latency_seconds", seconds)
    for category, n in tokens.items():
        metrics.inc("row_tokens", n, category=category)
    metrics.set_gauge("last_commit_timestamp_seconds", time.time())
    for category, rows in entry.categories.items():
        metrics.inc("rows_committed", rows, category=category)
        metrics.inc("candidates", rows, category=category, stage="written")


def writer_stage(root: str, **options: Any) -> WriterStage:
    """Args: root, the output root (local path or filesystem URI); options, `PartWriter` keywords
    (targets, rows_per_part, flush_interval_s, run_id, exports, keep_rejects)."""
    return WriterStage(PartWriter(root, on_commit=_report_commit, **options))
