"""Near-duplicate rejection: faiss shards and the serialised admission decision.

Every shard holds part of the accepted vectors; a query goes to all shards, an accepted vector is
inserted into one. `Gate.admit` is the one place where check-and-insert happens: it compares a
batch against the shards *and* against the earlier members of the same batch, so two near-duplicates
in flight at the same moment cannot both pass, since the gate runs admissions one at a time. The gate
actor is a thin shell around `Gate`; `NoveltyStage` is the stage core the embedding replicas run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import faiss
import numpy as np

from instructflow.actors.core.stage import Outcome, Stage
from instructflow.instructors.record import Candidate, novelty_text

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

    def remove(self, positions: Sequence[int]) -> None:
        """Removes the vectors at `positions`; the others keep their order."""
        if len(positions):
            self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(positions, dtype=np.int64)))

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


class ShardClient(Protocol):
    """One shard as the gate reaches it: in this process (`LocalShard`) or as a Ray actor. Every
    answer carries the shard's `generation`, new whenever the shard (re)starts empty."""

    async def best(self, vectors: np.ndarray) -> tuple[str, np.ndarray]: ...
    async def add(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]: ...
    async def reset(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]: ...
    async def contents(self) -> tuple[str, list[str], np.ndarray]: ...
    async def remove(self, keys: list[str]) -> tuple[str, int]: ...


class LocalShard:
    """A shard in this process: the core of the shard actor, and the gate's shard in unit tests."""

    def __init__(self, dim: int) -> None:
        self.index = NoveltyShard(dim)
        self.keys: list[str] = []
        self.generation = uuid.uuid4().hex

    async def best(self, vectors: np.ndarray) -> tuple[str, np.ndarray]:
        return self.generation, self.index.best(vectors)

    async def add(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]:
        self.index.add(vectors)
        self.keys.extend(keys)
        return self.generation, len(self.index)

    async def reset(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]:
        self.index = NoveltyShard(self.index.dim)
        self.keys = []
        return await self.add(vectors, keys)

    async def contents(self) -> tuple[str, list[str], np.ndarray]:
        return self.generation, list(self.keys), self.index.vectors()

    async def remove(self, keys: list[str]) -> tuple[str, int]:
        gone = set(keys)
        positions = [i for i, key in enumerate(self.keys) if key in gone]
        self.index.remove(positions)
        self.keys = [key for key in self.keys if key not in gone]
        return self.generation, len(self.index)


@dataclass
class GateStats:
    vectors: int
    shard_sizes: list[int]
    refills: int
    released: int = 0  # admitted vectors taken out again: their instruction made no row (`Gate.release`)


class Gate:
    """Serialised check-and-insert over every shard: the one admission rule the pipeline runs.

    `admit` queries all shards, applies `decide` (which also compares members of the batch), and
    inserts the accepted vectors into the smallest shard before the next admission starts. The
    gate keeps a ledger of what each shard holds: a shard that comes back empty after a restart
    (new generation) is refilled from it, and a gate that restarts rebuilds the ledger from the
    shards (`adopt`) before its first admission.
    """

    def __init__(self, shards: Sequence[ShardClient], threshold: float, dim: int = 384) -> None:
        self.shards = list(shards)
        self.threshold = threshold
        self.dim = dim
        self.ledger = ShardLedger(len(self.shards))
        self.lock = asyncio.Lock()
        self.refills = 0
        self.released = 0
        self.adopted = False

    async def _adopt(self) -> None:
        """Takes over what the shards already hold (nothing on a fresh run); call under the lock."""
        if self.adopted:
            return
        answers = await asyncio.gather(*[s.contents() for s in self.shards])
        for s, (generation, keys, vectors) in enumerate(answers):
            self.ledger.record(s, keys, vectors)
            self.ledger.generations[s] = generation
        self.adopted = True

    async def seed(self, keys: list[str], vectors: np.ndarray) -> int:
        """Loads committed rows (resume) into the shards without checks."""
        async with self.lock:
            await self._adopt()
            for s, part in enumerate(np.array_split(np.arange(len(keys)), len(self.shards))):
                self.ledger.record(s, [keys[i] for i in part], vectors[part])
                await self._refill(s)
        return len(self.ledger.seen)

    async def _refill(self, s: int) -> None:
        keys, vectors = self.ledger.contents(s, self.dim)
        self.ledger.generations[s], _ = await self.shards[s].reset(vectors, keys)

    async def _best(self, vectors: np.ndarray) -> np.ndarray:
        answers = await asyncio.gather(*[s.best(vectors) for s in self.shards])
        best = np.full(len(vectors), -1.0, dtype=np.float32)
        for s, (generation, sims) in enumerate(answers):
            if self.ledger.stale(s, generation):
                self.refills += 1
                await self._refill(s)
                _, sims = await self.shards[s].best(vectors)
            self.ledger.generations[s] = self.ledger.generations[s] or generation
            best = np.maximum(best, sims)
        return best

    async def admit(
        self, keys: Sequence[str], vectors: np.ndarray, groups: Sequence[str | None] | None = None
    ) -> list[Decision]:
        async with self.lock:
            await self._adopt()
            best = await self._best(vectors)
            decisions = decide(keys, vectors, best, self.ledger.seen, self.threshold, groups)
            rows = [i for i, d in enumerate(decisions) if d.accepted]
            if rows:
                s = self.ledger.smallest()
                self.ledger.record(s, [keys[i] for i in rows], vectors[rows])
                generation, _ = await self.shards[s].add(vectors[rows], [keys[i] for i in rows])
                if self.ledger.stale(s, generation):
                    self.refills += 1
                    await self._refill(s)
                self.ledger.generations[s] = self.ledger.generations[s] or generation
        return decisions

    async def release(self, keys: Sequence[str]) -> int:
        """Takes admitted instructions that will make no row (their answer failed, was cut off or was
        rejected by their category) out of the index, so that they block no later near-duplicate:
        the only copy of them the run keeps is in the rejects log. Their keys stay seen, so the very
        same instruction is still an exact duplicate. Returns how many vectors were removed."""
        gone = set(keys)
        removed = 0
        async with self.lock:
            await self._adopt()
            for s in range(len(self.shards)):
                dropped = self.ledger.drop(s, gone)
                if not dropped:
                    continue
                removed += dropped
                generation, _ = await self.shards[s].remove(sorted(gone))
                if self.ledger.stale(s, generation):
                    self.refills += 1
                    await self._refill(s)  # restarted empty meanwhile: load what remains
                self.ledger.generations[s] = self.ledger.generations[s] or generation
            self.released += removed
        return removed

    async def stats(self) -> GateStats:
        async with self.lock:
            await self._adopt()  # the driver asks every tick: a restarted gate adopts at once
        sizes = [self.ledger.size(s) for s in range(len(self.shards))]
        return GateStats(vectors=sum(sizes), shard_sizes=sizes, refills=self.refills, released=self.released)


Encode = Callable[[list[str]], Awaitable[np.ndarray]]
Admit = Callable[[list[str], np.ndarray, list[str | None]], Awaitable[list[Decision]]]


@dataclass
class NoveltyStats:
    encode_s: float
    encoded: int


class NoveltyStage(Stage):
    """Drops exact duplicates it has already seen, embeds the rest (second-round rows excepted, see
    `process`), asks the gate to admit them, and routes what it admits: to its category's answer
    queue (`answer:<category>`) when it still needs an answer, else to the judges (`judge`)."""

    name = "novelty"

    def __init__(self, encode: Encode, admit: Admit, batch_size: int = 256, concurrency: int = 3) -> None:
        self.encode = encode
        self.admit = admit
        self.batch_size = batch_size
        # Three batches at once: one encodes while up to two wait for the gate and pass on.
        self.concurrency = concurrency
        self.seen: set[str] = set()
        self.encode_s = 0.0
        self.encoded = 0

    async def process(self, batch: list[Candidate]) -> Outcome:
        out = Outcome()
        fresh = []
        for cand in batch:
            if cand.id in self.seen:
                out.rejected.append((cand, EXACT))
            elif cand.source_id is not None:
                # A second-round row (a re-answer, a correction) repeats its source on purpose: its
                # source passed this check, and each source is used once. Compared with the index it
                # would be its source's near-duplicate; it is passed on unembedded.
                self.seen.add(cand.id)
                out.send(f"answer:{cand.category}" if cand.needs_response else "judge", cand)
            else:
                self.seen.add(cand.id)
                fresh.append(cand)
        if not fresh:
            return out
        started = time.monotonic()
        vectors = await self.encode([novelty_text(c.instruction, c.system, c.messages) for c in fresh])
        self.encode_s += time.monotonic() - started
        self.encoded += len(fresh)
        decisions = await self.admit([c.id for c in fresh], vectors, [c.meta.get("group") for c in fresh])
        for cand, vector, decision in zip(fresh, vectors, decisions, strict=True):
            # Compared with nothing (an empty index, no earlier batch member): no similarity to state.
            cand.similarity = decision.similarity if decision.similarity > -1.0 else None
            if not decision.accepted:
                out.rejected.append((cand, decision.reason or NEAR))
                continue
            cand.embedding = vector
            out.send(f"answer:{cand.category}" if cand.needs_response else "judge", cand)
        return out

    def detail(self) -> NoveltyStats:
        return NoveltyStats(encode_s=round(self.encode_s, 3), encoded=self.encoded)


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

    def drop(self, shard: int, keys: set[str]) -> int:
        """Forgets the vectors of `keys` in `shard` (their keys stay in `seen`); returns how many."""
        ids = self.ids[shard]
        keep = [i for i, key in enumerate(ids) if key not in keys]
        if len(keep) == len(ids):
            return 0
        self.vectors[shard] = [np.concatenate(self.vectors[shard])[keep]] if keep else []
        self.ids[shard] = [ids[i] for i in keep]
        return len(ids) - len(keep)

    def contents(self, shard: int, dim: int) -> tuple[list[str], np.ndarray]:
        if not self.vectors[shard]:
            return [], np.zeros((0, dim), dtype=np.float32)
        return list(self.ids[shard]), np.concatenate(self.vectors[shard])

    def stale(self, shard: int, generation: str) -> bool:
        """True when the shard restarted since the ledger last saw it (it must be refilled)."""
        return self.generations[shard] is not None and self.generations[shard] != generation
