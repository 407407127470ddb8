"""`instructflow merge`: several datasets into one, without the rows they share.

Inputs are read in the order given, each in manifest order, one part at a time. For each part:

1. the row filter drops rows by category and judge score;
2. exact duplicates: a row whose id (the hash of its normalised system prompt and instruction) is
   already kept is dropped;
3. near duplicates: a row whose instruction embedding reaches cosine `threshold` against a row kept
   from an *earlier* input is dropped. Rows of one input are not compared with each other: that
   input's own novelty stage already did so when it was generated (and some rows, such as the two
   sides of a counterfactual pair, are alike on purpose);
4. the kept rows, with a ``source`` column naming their input, are committed as one output part by
   the writer's own commit protocol (`commit.PartCommitter`), so the output is a run-like root:
   ``data/`` parts, ``manifest.jsonl`` and ``instructions.jsonl``, plus ``merge.json`` (what was
   merged, how) and ``merge.journal.jsonl`` (`merge_journal`), which makes a killed merge resumable.

Stored embeddings are used as they are when an input's embedding model (from its
``config.effective.yaml`` or ``merge.json``) is the merge's; otherwise, and for rows that have no
embedding, the instructions are embedded again with `embedder.Embedder`. Layout and options:
docs/datasets.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from instructflow.actors.core.commit import PartCommitter
from instructflow.actors.core.exports import read_part
from instructflow.actors.core.filters import RowFilter
from instructflow.actors.core.manifest import PartEntry, part_file
from instructflow.actors.core.merge_journal import Journal, PartResult
from instructflow.actors.core.merge_plan import (
    MergeError,
    MergeInput,
    Source,
    parse_inputs,
    plan,
    start_output,
)
from instructflow.actors.core.merge_rows import MERGED_SCHEMA, merged_table, vectors_of
from instructflow.actors.core.novelty import NoveltyShard
from instructflow.actors.core.recovery import recover
from instructflow.actors.core.runinfo import MERGE_RECORD
from instructflow.actors.core.storage import OutputError, Store, open_store
from instructflow.instructors.record import novelty_text

Encode = Callable[[list[str]], np.ndarray]


@dataclass
class MergeSummary:
    """What a merge produced (counts cover the whole merge, resumed parts included)."""

    out: str
    merge_id: str
    rows: int = 0
    filtered: int = 0
    exact: int = 0
    near: int = 0
    kept: int = 0
    reembedded: int = 0
    kept_by_source: dict[str, int] = field(default_factory=dict)
    parts: int = 0
    resumed_parts: int = 0  # input parts a previous, interrupted call had already done
    seconds: float = 0.0

    def add(self, result: PartResult, label: str) -> None:
        self.rows += result.rows
        self.filtered += result.filtered
        self.exact += result.exact
        self.near += result.near
        self.kept += result.kept
        self.reembedded += result.reembedded
        self.kept_by_source[label] = self.kept_by_source.get(label, 0) + result.kept
        self.parts += result.out is not None


class _Merger:
    """The loop over input parts, with the kept ids and the index of earlier inputs' vectors."""

    def __init__(self, sources: list[Source], spec: dict, store: Store, where: RowFilter, encoder: Callable[[str], Encode]) -> None:
        self.sources, self.spec, self.store, self.where = sources, spec, store, where
        self.threshold: float = spec["threshold"]
        self.make_encoder, self._encode = encoder, None
        found = recover(store, ["jsonl"])
        self.committer = PartCommitter(store, found, run_id=spec["merge_id"], jsonl=True)
        self.next_part = found.next_part
        self.seen: set[str] = set(found.ids)
        self.journal = Journal(store)
        self.done = self.journal.done({e.file for e in found.entries})
        self.index: NoveltyShard | None = None
        self.pending: dict[int, list[np.ndarray]] = {}
        committed = {e.file: e for e in found.entries}
        for (i, _), result in sorted(self.done.items(), key=lambda kv: kv[0]):
            if result.out is not None:  # resumed: the kept vectors come back from the output parts
                self.pending.setdefault(i, []).append(vectors_of(read_part(store, committed[result.out], ["embedding"])))

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._encode is None:
            self._encode = self.make_encoder(self.spec["model"])
        return self._encode(texts)

    def _index_add(self, vectors: np.ndarray) -> None:
        if len(vectors) == 0:
            return
        if self.index is None:
            self.index = NoveltyShard(vectors.shape[1])
        elif vectors.shape[1] != self.index.dim:
            raise MergeError(f"embeddings of {vectors.shape[1]} dimensions meet an index of {self.index.dim}")
        self.index.add(vectors)

    def run(self, summary: MergeSummary, on_part: Callable[[PartResult], None] | None) -> None:
        for i, source in enumerate(self.sources):
            for entry in source.entries:
                result = self.done.get((i, entry.file))
                if result is None:
                    result = self._merge_part(i, source, entry)
                    if on_part is not None:
                        on_part(result)
                else:
                    summary.resumed_parts += 1
                summary.add(result, source.label)
            for block in self.pending.pop(i, []):  # block by block: no second copy of them all
                self._index_add(block)

    def _vectors(self, source: Source, table: pa.Table) -> tuple[np.ndarray, int]:
        """The embedding of each row: stored ones when the model matches, else computed here."""
        stored = None if source.reembed else vectors_of(table, allow_missing=True)
        missing = np.arange(table.num_rows) if stored is None else np.flatnonzero(np.isnan(stored[:, 0]))
        if len(missing) == 0:
            return stored, 0
        rows = table.select(["instruction", "system", "messages"]).to_pylist()
        fresh = self.encode([novelty_text(rows[r]["instruction"], rows[r]["system"], rows[r]["messages"]) for r in missing])
        if stored is None or stored.shape[1] != fresh.shape[1]:
            if stored is not None and len(missing) < table.num_rows:
                raise MergeError(f"{source.label}: stored embeddings have {stored.shape[1]} dimensions, the model {fresh.shape[1]}")
            stored = np.zeros((table.num_rows, fresh.shape[1]), dtype=np.float32)
        stored[missing] = fresh
        return stored, len(missing)

    def _merge_part(self, i: int, source: Source, entry: PartEntry) -> PartResult:
        table = read_part(source.store, entry)
        rows = table.num_rows
        table = self.where.apply(table)
        filtered = rows - table.num_rows
        keep, batch = [], set()
        for r, row_id in enumerate(table.column("id").to_pylist()):
            if row_id not in self.seen and row_id not in batch:
                keep.append(r)
                batch.add(row_id)
        exact = table.num_rows - len(keep)
        table = table.take(pa.array(keep, type=pa.int64()))
        vectors, reembedded = self._vectors(source, table) if table.num_rows else (np.zeros((0, 1), np.float32), 0)
        near = 0
        if self.index is not None and table.num_rows:
            novel = self.index.best(vectors) < self.threshold
            near = int((~novel).sum())
            table, vectors = table.filter(pa.array(novel)), vectors[novel]
        out = part_file(self.next_part) if table.num_rows else None
        result = PartResult(i, entry.file, out, rows, filtered, exact, near, table.num_rows, reembedded)
        self.journal.append(result)  # before the commit: see merge_journal
        if out is not None:
            committed = self.committer.commit(merged_table(table, source.label, vectors, where=source.store.display(entry.file)))
            if committed.file != out:
                raise OutputError(self.store.display(committed.file), f"committed as another part than journalled ({out})")
            self.next_part += 1
            self.seen.update(table.column("id").to_pylist())
            self.pending.setdefault(i, []).append(vectors)
        return result


def _default_encoder(model: str) -> Encode:
    from instructflow.actors.core.embedder import Embedder

    return Embedder(model).encode


def merge(
    inputs: Sequence[MergeInput],
    out: str,
    *,
    where: RowFilter | None = None,
    threshold: float | None = None,
    encoder: Callable[[str], Encode] = _default_encoder,
    on_part: Callable[[PartResult], None] | None = None,
) -> MergeSummary:
    """Merges `inputs` into a new output root `out`, or resumes an interrupted merge into it.

    Args:
        inputs: the datasets, in priority order (a row shared by two is kept from the earlier).
        out: the output root (local path or URI); must be new, or hold this same merge.
        where: which rows to take (categories, judge score).
        threshold: cosine similarity at or above which a row is a near duplicate of a row kept from
            an earlier input; None takes the lowest of the inputs' novelty thresholds.
        encoder: makes the encode function for a model name (re-embedding only).
        on_part: called after each input part is merged (progress; tests stop a merge from it).

    Raises:
        MergeError: the inputs or options cannot be merged, or `out` holds something else.
        OutputError: a root cannot be read or written (the message names the file).
    """
    started = time.perf_counter()
    where = where or RowFilter()
    sources, spec = plan(inputs, where, threshold)
    store = open_store(out)
    try:
        start_output(store, spec, sources)
        merger = _Merger(sources, spec, store, where, encoder)
        summary = MergeSummary(out=store.display(), merge_id=spec["merge_id"])
        merger.run(summary, on_part)
        summary.seconds = time.perf_counter() - started
        record = {**spec, "summary": {k: v for k, v in vars(summary).items() if k not in ("out", "seconds", "resumed_parts")}}
        store.write_atomic(MERGE_RECORD, json.dumps(record, indent=1).encode())
    except OSError as exc:
        raise OutputError(exc.filename or store.display(), exc) from exc
    return summary


__all__ = ["MERGED_SCHEMA", "MergeError", "MergeInput", "MergeSummary", "merge", "parse_inputs", "plan"]
