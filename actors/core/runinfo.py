"""What an output root says about how its rows were made: run id, teacher, embedding model, threshold.

A generated run holds ``run.json`` and ``config.effective.yaml`` (written by the driver); a merged
dataset holds ``run.json`` and ``merge.json`` (written by `merge`). Both are read as plain data, not
through the config schema, so a dataset made by an older or newer instructflow still reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from instructflow.actors.core.storage import OutputError, Store

RUN_RECORD = "run.json"
EFFECTIVE_CONFIG = "config.effective.yaml"
MERGE_RECORD = "merge.json"
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"  # config.schema.Novelty.model's default


@dataclass
class RunInfo:
    """How an output root was made, as far as its side files tell.

    Attributes:
        run_id: the run id (config hash), or the merge id of a merged dataset; None when unrecorded.
        teacher_models: teacher model(s) named by the config (or by the merged inputs).
        embedding_model: the sentence-embedding model of the ``embedding`` column, if recorded.
        threshold: the novelty threshold the rows were deduplicated at, if recorded.
        config_text: ``config.effective.yaml`` as written (None for a merged dataset).
        merge: ``merge.json`` of a merged dataset (None for a generated run).
    """

    run_id: str | None = None
    teacher_models: list[str] = field(default_factory=list)
    embedding_model: str | None = None
    threshold: float | None = None
    config_text: str | None = None
    merge: dict[str, Any] | None = None


def _read_text(store: Store, rel: str) -> str | None:
    if store.size(rel) is None:
        return None
    return store.read(rel).decode("utf-8")


def read_run_info(store: Store) -> RunInfo:
    """Reads what `store`'s side files record (missing files leave fields empty).

    Raises:
        OutputError: a side file exists but cannot be parsed (the message names it).
    """
    info = RunInfo()
    merge: str | None = None
    try:
        run = _read_text(store, RUN_RECORD)
        if run is not None:
            info.run_id = json.loads(run).get("run_id")
        merge = _read_text(store, MERGE_RECORD)
        if merge is not None:
            info.merge = json.loads(merge)
            info.embedding_model = info.merge.get("model")
            info.threshold = info.merge.get("threshold")
            info.teacher_models = sorted({m for i in info.merge.get("inputs", []) for m in i.get("teachers", [])})
            info.run_id = info.merge.get("merge_id", info.run_id)
    except ValueError as exc:
        raise OutputError(store.display(MERGE_RECORD if merge is not None else RUN_RECORD), f"unreadable ({exc})") from exc
    text = _read_text(store, EFFECTIVE_CONFIG)
    if text is not None and info.merge is None:
        try:
            config = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise OutputError(store.display(EFFECTIVE_CONFIG), f"unreadable ({exc})") from exc
        info.config_text = text
        novelty, teacher = config.get("novelty") or {}, config.get("teacher") or {}
        info.embedding_model = novelty.get("model", DEFAULT_EMBEDDING_MODEL)
        info.threshold = novelty.get("threshold")
        if teacher.get("model"):
            info.teacher_models = [str(teacher["model"])]
    return info
