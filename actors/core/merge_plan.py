"""What a merge will do, fixed before it starts: its inputs, model, threshold, filter and id.

The plan is written to ``merge.json`` in the output on a first start; a restarted merge recomputes it
and must find the same id there, so a merge never resumes with other inputs or options.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from instructflow.actors.core.filters import RowFilter
from instructflow.actors.core.manifest import MANIFEST, PartEntry, read_manifest
from instructflow.actors.core.runinfo import (
    DEFAULT_EMBEDDING_MODEL,
    MERGE_RECORD,
    RUN_RECORD,
    RunInfo,
    read_run_info,
)
from instructflow.actors.core.storage import Store, open_store

DEFAULT_THRESHOLD = 0.90  # config.schema.Novelty.threshold's default


class MergeError(ValueError):
    """A merge that cannot start or continue; the message names the input or output and why."""


@dataclass(frozen=True)
class MergeInput:
    """One dataset to merge: the label its rows get in ``source``, and its root."""

    label: str
    root: str


def parse_inputs(specs: Sequence[str]) -> list[MergeInput]:
    """Inputs from the command line: ``PATH`` (labelled by its last path segment) or ``NAME=PATH``.

    Raises:
        MergeError: fewer than two inputs, or two inputs with the same label.
    """
    inputs = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name or not name:
            name, path = spec.rstrip("/").rpartition("/")[2] or spec, spec
        inputs.append(MergeInput(name, path))
    if len(inputs) < 2:
        raise MergeError("merge needs at least two inputs")
    labels = Counter(i.label for i in inputs)
    twice = sorted(label for label, n in labels.items() if n > 1)
    if twice:
        raise MergeError(f"inputs share the label(s) {twice}; name them apart as NAME=PATH")
    return inputs


@dataclass
class Source:
    """One opened input: its label, store, committed parts, side-file record, and whether its rows
    are embedded again (its embedding model is not the merge's)."""

    label: str
    store: Store
    entries: list[PartEntry]
    info: RunInfo
    reembed: bool

    @property
    def model(self) -> str:
        return self.info.embedding_model or DEFAULT_EMBEDDING_MODEL


def _open_sources(inputs: Sequence[MergeInput], where: RowFilter) -> list[Source]:
    sources = []
    for item in inputs:
        store = open_store(item.root)
        if store.size(MANIFEST) is None:
            raise MergeError(f"{store.display(MANIFEST)}: not found: is {item.root} an instructflow output directory?")
        state = read_manifest(store)
        sources.append(Source(item.label, store, state.entries, read_run_info(store), reembed=False))
    where.check({c for s in sources for e in s.entries for c in e.categories}, "no input")
    return sources


def _spec(sources: list[Source], where: RowFilter, threshold: float, model: str) -> dict:
    inputs = [
        {
            "label": s.label,
            "root": s.store.display(),
            "run_id": s.info.run_id,
            "model": s.model,
            "teachers": s.info.teacher_models,
            "reembed": s.reembed,
            "parts": [[e.file, e.sha256] for e in s.entries],
        }
        for s in sources
    ]
    spec = {"inputs": inputs, "filter": where.to_json(), "threshold": threshold, "model": model}
    digest = hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=6).hexdigest()
    return {"merge_id": f"merge-{digest}", **spec}


def plan(inputs: Sequence[MergeInput], where: RowFilter, threshold: float | None) -> tuple[list[Source], dict]:
    """Opens the inputs and fixes what the merge does (its `merge.json` record, with its id).

    The embedding model is the first input's; inputs made with another model are re-embedded. The
    threshold, when not given, is the lowest (strictest) of the inputs' novelty thresholds.
    """
    sources = _open_sources(inputs, where)
    model = sources[0].model
    for s in sources:
        s.reembed = s.model != model
    if threshold is None:
        known = [s.info.threshold for s in sources if s.info.threshold is not None]
        threshold = min(known) if known else DEFAULT_THRESHOLD
    if not 0 < threshold <= 1:
        raise MergeError(f"threshold must be in (0, 1], not {threshold}")
    return sources, _spec(sources, where, float(threshold), model)


def start_output(store: Store, spec: dict, sources: list[Source]) -> None:
    """Writes the output's records on a first start; on a restart checks it is the same merge."""
    roots = {s.store.display() for s in sources}
    if store.display() in roots:
        raise MergeError(f"--out {store.display()} is one of the inputs; merge into a new folder")
    if store.size(MERGE_RECORD) is not None:
        previous = json.loads(store.read(MERGE_RECORD))
        if previous.get("merge_id") != spec["merge_id"]:
            raise MergeError(
                f"{store.display()} holds another merge ({previous.get('merge_id')}): its inputs, their parts, "
                f"the filter or the threshold differ from this one ({spec['merge_id']}); use a new --out"
            )
        return
    if store.size(MANIFEST) is not None:
        raise MergeError(f"{store.display()} already holds a dataset; merge into a new folder")
    store.makedirs("")
    store.write_atomic(MERGE_RECORD, json.dumps(spec, indent=1).encode())
    record = {"run_id": spec["merge_id"], "merged_from": [s.label for s in sources], "started_at": time.time()}
    store.write_atomic(RUN_RECORD, json.dumps(record, indent=2).encode())
