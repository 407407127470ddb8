"""What a writer does when it opens an output root: recover the committed state from the manifest.

1. Check the root is writable (a probe file), so a bad location fails before any request is paid.
2. Read the manifest; cut a torn last line away (a crash during an append).
3. Check every listed part exists with the recorded size, and read its ``id`` and ``category``
   columns: committed ids and per-category counts are rebuilt from the parts themselves.
4. Delete temp files and parts the manifest does not list (a crash before the commit point).
5. Rebuild ``instructions.jsonl`` when its size disagrees with the manifest.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from instructflow.actors.core import exports
from instructflow.actors.core.manifest import (
    DATA_DIR,
    MANIFEST,
    PartEntry,
    part_number,
    read_manifest,
)
from instructflow.actors.core.storage import OutputError, Store, is_temp_name, temp_name

log = logging.getLogger(__name__)


@dataclass
class Recovered:
    """The committed state of an output root.

    Attributes:
        entries: the manifest's entries, in commit order.
        manifest: the manifest's valid bytes (what the file holds after recovery).
        ids: every committed row id.
        sources: (category, source_id) of every committed row made from another row.
        counts: committed rows per category.
        next_part: the number the next part gets.
        jsonl_stale: ``instructions.jsonl`` is behind and must be rebuilt on close.
    """

    entries: list[PartEntry]
    manifest: bytes
    ids: set[str] = field(default_factory=set)
    sources: set[tuple[str, str]] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    next_part: int = 1
    jsonl_stale: bool = False


def recover(store: Store, formats: Sequence[str]) -> Recovered:
    """Recovers `store` as described in the module docstring.

    Raises:
        OutputError: a listed part is missing or disagrees with its entry, or the manifest is corrupt.
        OSError: the root cannot be read or written.
    """
    store.makedirs(DATA_DIR)
    probe = temp_name("write-probe")
    store.write(probe, b"ok")
    store.delete(probe)
    state = read_manifest(store)
    if state.torn:
        log.warning("cutting a torn last line from %s", store.display(MANIFEST))
        if store.supports_append:
            store.truncate(MANIFEST, len(state.valid))
        else:
            store.write_atomic(MANIFEST, [state.valid])
    found = Recovered(state.entries, state.valid)
    for entry in found.entries:
        _load_part(store, entry, found)
    remove_orphans(store, {e.file for e in found.entries})
    found.next_part = max((part_number(e.file) or 0 for e in found.entries), default=0) + 1
    if "jsonl" in formats and not exports.jsonl_is_complete(store, found.entries):
        if store.supports_append:
            log.warning("rebuilding %s from the committed parts", store.display(exports.INSTRUCTIONS))
            exports.write_export(store, found.entries, "jsonl")
        else:
            found.jsonl_stale = True  # object stores rebuild it on close anyway
    return found


def _load_part(store: Store, entry: PartEntry, found: Recovered) -> None:
    where = store.display(entry.file)
    size = store.size(entry.file)
    if size != entry.bytes:
        state = "missing" if size is None else f"{size} bytes, the manifest says {entry.bytes}"
        raise OutputError(where, f"committed part is {state}")
    try:
        table = exports.read_part(store, entry, ["id", "category", "source_id"])
    except (pa.ArrowInvalid, ValueError) as exc:  # right size, wrong bytes: not a Parquet file
        raise OutputError(where, f"committed part is unreadable ({exc})") from exc
    counts = Counter(table.column("category").to_pylist())
    if table.num_rows != entry.rows or dict(counts) != entry.categories:
        raise OutputError(where, "part content disagrees with its manifest entry")
    ids = table.column("id").to_pylist()
    repeated = found.ids.intersection(ids)
    if repeated:
        log.error("%s repeats %d committed id(s), e.g. %s", where, len(repeated), next(iter(repeated)))
    found.ids.update(ids)
    found.counts.update(counts)
    categories = table.column("category").to_pylist()
    found.sources.update((c, s) for c, s in zip(categories, table.column("source_id").to_pylist(), strict=True) if s)


def remove_orphans(store: Store, listed: set[str]) -> list[str]:
    """Deletes temp files and parts not in `listed`; returns what was deleted."""
    data = [f"{DATA_DIR}/{n}" for n in store.listdir(DATA_DIR)]
    doomed = [r for r in data if r not in listed and (is_temp_name(r.rpartition("/")[2]) or part_number(r))]
    doomed += [n for n in store.listdir("") if is_temp_name(n)]
    doomed += [f"exports/{n}" for n in store.listdir("exports") if is_temp_name(n)]
    for rel in doomed:
        log.warning("removing uncommitted file %s", store.display(rel))
        store.delete(rel)
    return doomed


def iter_vectors(store: Store, entries: Sequence[PartEntry]) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yields ``(ids, vectors)`` per part for the rows that have an embedding (float32, n x d)."""
    for entry in entries:
        table = exports.read_part(store, entry, ["id", "embedding"])
        table = table.filter(pc.is_valid(table.column("embedding")))
        if table.num_rows == 0:
            continue
        column = table.column("embedding").combine_chunks()
        dims = pc.unique(pc.list_value_length(column)).to_pylist()
        if len(dims) != 1:
            raise ValueError(f"{entry.file}: embeddings of different sizes {dims}")
        flat = column.flatten().to_numpy(zero_copy_only=False)
        yield table.column("id").to_pylist(), flat.reshape(table.num_rows, dims[0])
