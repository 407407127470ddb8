"""Near-duplicate rejection: faiss shards and the serialised admission decision.

Every shard holds part of the accepted vectors; a query goes to all shards, an accepted vector is
inserted into one. `NoveltyIndex.admit` is the one place where check-and-insert happens: it compares a
batch against the shards *and* against the earlier members of the same batch, so two near-duplicates
in flight at the same moment cannot both pass as long as admissions are serialised (the gate actor
runs them one at a time).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

EXACT = "exact_duplicate"
NEAR = "near_duplicate"


class NoveltyShard:
    """One exact inner-product index over unit vectors (cosine similarity)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.index = faiss.IndexFlatIP(dim)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def best(self, vectors: np.ndarray) -> np.ndarray:
        """Highest cosine similarity of each query to this shard (-1 when the shard is empty)."""
        if len(self) == 0 or len(vectors) == 0:
            return np.full(len(vectors), -1.0, dtype=np.float32)
        sims, _ = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        return sims[:, 0]

    def add(self, vectors: np.ndarray) -> None:
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def vectors(self) -> np.ndarray:
        """Every stored vector, in insertion order (n x dim float32)."""
        if len(self) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.index.reconstruct_n(0, len(self))


@dataclass(frozen=True)
class Decision:
    accepted: bool
    similarity: float  # highest cosine similarity to anything seen before (index or same batch)
    reason: str | None = None  # EXACT or NEAR when rejected


def decide(
    keys: Sequence[str],
    vectors: np.ndarray,
    index_best: np.ndarray,
    seen: set[str],
    threshold: float,
    groups: Sequence[str | None] | None = None,
) -> list[Decision]:
    """Admission for one batch. Pure: `seen` is read, not changed.

    A candidate is rejected when its exact-duplicate key was seen before or earlier in the batch,
    when its best similarity to the index reaches `threshold`, or when it is that similar to an
    earlier accepted member of the same batch. Members of one `group` (e.g. the true and the
    falsified passage of a counterfactual pair) are meant to be alike and are not compared with
    each other, only with everything else.
    """
    decisions: list[Decision] = []
    batch_keys: set[str] = set()
    accepted = np.zeros(len(keys), dtype=bool)
    # Similarities within the batch, computed once; group members (codes >= 0) skip their own group.
    gram = vectors @ vectors.T if len(keys) > 1 else None
    names: dict[str, int] = {}
    codes = np.array([-1 if g is None else names.setdefault(g, len(names)) for g in (groups or [None] * len(keys))])
    for row, key in enumerate(keys):
        best = float(index_best[row])
        if key in seen or key in batch_keys:
            decisions.append(Decision(False, 1.0, EXACT))
            continue
        batch_keys.add(key)
        others = accepted if codes[row] < 0 else accepted & (codes != codes[row])
        if gram is not None and others.any():
            best = max(best, float(gram[row, others].max()))
        if best >= threshold:
            decisions.append(Decision(False, best, NEAR))
            continue
        accepted[row] = True
        decisions.append(Decision(True, best))
    return decisions


class NoveltyIndex:
    """All shards in one process (tests, benchmarks, single-node runs) with the admission rule.

    The Ray topology uses the same `decide` with shards in separate actors.
    """

    def __init__(self, dim: int, shards: int, threshold: float) -> None:
        self.shards = [NoveltyShard(dim) for _ in range(shards)]
        self.threshold = threshold
        self.seen: set[str] = set()
        self.rejects: Counter[str] = Counter()

    def admit(self, keys: Sequence[str], vectors: np.ndarray) -> list[Decision]:
        index_best = self.best(vectors)
        decisions = decide(keys, vectors, index_best, self.seen, self.threshold)
        self.commit(keys, vectors, decisions)
        return decisions

    def best(self, vectors: np.ndarray) -> np.ndarray:
        best = np.full(len(vectors), -1.0, dtype=np.float32)
        for shard in self.shards:
            best = np.maximum(best, shard.best(vectors))
        return best

    def commit(self, keys: Sequence[str], vectors: np.ndarray, decisions: list[Decision]) -> None:
        rows = [i for i, d in enumerate(decisions) if d.accepted]
        for d in decisions:
            if not d.accepted and d.reason:
                self.rejects[d.reason] += 1
        self.seen.update(keys[i] for i in rows)
        if rows:
            target = min(range(len(self.shards)), key=lambda s: len(self.shards[s]))
            self.shards[target].add(vectors[rows])

    def seed(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Loads already-committed rows (resume) without any checks, spread over the shards."""
        self.seen.update(keys)
        for s, part in enumerate(np.array_split(np.arange(len(keys)), len(self.shards))):
            self.shards[s].add(vectors[part])


class ShardLedger:
    """The gate's record of what each shard holds, so a shard that restarts empty can be refilled.

    Shards report a `generation` (fresh on every actor start) with each answer; when it differs from
    the one recorded here, the shard lost its contents and the gate reloads it from this ledger.
    Costs one extra copy of the accepted vectors in the gate process.
    """

    def __init__(self, shards: int) -> None:
        self.ids: list[list[str]] = [[] for _ in range(shards)]
        self.vectors: list[list[np.ndarray]] = [[] for _ in range(shards)]
        self.generations: list[str | None] = [None] * shards
        self.seen: set[str] = set()

    def smallest(self) -> int:
        return min(range(len(self.ids)), key=lambda s: len(self.ids[s]))

    def size(self, shard: int) -> int:
        return len(self.ids[shard])

    def record(self, shard: int, keys: Sequence[str], vectors: np.ndarray) -> None:
        if len(keys):
            self.ids[shard].extend(keys)
            self.vectors[shard].append(np.asarray(vectors, dtype=np.float32))
            self.seen.update(keys)

    def contents(self, shard: int, dim: int) -> tuple[list[str], np.ndarray]:
        if not self.vectors[shard]:
            return [], np.zeros((0, dim), dtype=np.float32)
        return list(self.ids[shard]), np.concatenate(self.vectors[shard])

    def stale(self, shard: int, generation: str) -> bool:
        """True when the shard restarted since the ledger last saw it (it must be refilled)."""
        return self.generations[shard] is not None and self.generations[shard] != generation
