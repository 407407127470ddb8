"""Novelty stage actors: faiss shards, the serialising gate, and the embedding workers.

Workers pull candidates from the novelty queue, drop exact duplicates they have already seen, embed
the rest in batches and ask the gate to admit them. The gate runs one admission at a time: it queries
every shard, applies `core.novelty.decide` (which also compares members of the same batch), inserts
the accepted vectors into the smallest shard, and only then takes the next batch. Accepted candidates
that still need an answer go to their category's answer queue; answered ones go to the judges.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import numpy as np
import ray

from instructflow.actors import metrics
from instructflow.actors.core.novelty import EXACT, Decision, NoveltyShard, ShardLedger, decide
from instructflow.actors.core.queue import QueueClosed
from instructflow.instructors.record import Candidate


def pack(cands: list[Candidate]) -> list[Candidate | tuple[Candidate, ...]]:
    """Queue items for the novelty stage: members of one group travel as one item (a tuple), so
    they always reach the gate in the same batch and are checked as a unit."""
    items: list[Candidate | tuple[Candidate, ...]] = []
    groups: dict[str, list[Candidate]] = {}
    for cand in cands:
        group = cand.meta.get("group")
        if group is None:
            items.append(cand)
        elif group not in groups:
            groups[group] = [cand]
            items.append(group)  # placeholder, replaced below to keep the order
        else:
            groups[group].append(cand)
    return [tuple(groups[i]) if isinstance(i, str) else i for i in items]


def unpack(items: list[Candidate | tuple[Candidate, ...]]) -> list[Candidate]:
    return [c for item in items for c in (item if isinstance(item, tuple) else (item,))]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class ShardActor:
    """One faiss shard. A restarted shard comes back empty with a new `generation`; the gate
    notices and refills it from its ledger. It keeps the keys of its vectors so that a restarted
    gate can rebuild its ledger from the shards (`contents`)."""

    def __init__(self, shard: int, dim: int) -> None:
        self.shard = shard
        self.index = NoveltyShard(dim)
        self.keys: list[str] = []
        self.generation = uuid.uuid4().hex

    def best(self, vectors: np.ndarray) -> tuple[str, np.ndarray]:
        return self.generation, self.index.best(vectors)

    def add(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]:
        self.index.add(vectors)
        self.keys.extend(keys)
        metrics.set_gauge("novelty_vectors", len(self.index), shard=str(self.shard))
        return self.generation, len(self.index)

    def reset(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]:
        """Replaces the contents (refill after a restart)."""
        self.index = NoveltyShard(self.index.dim)
        self.keys = []
        return self.add(vectors, keys)

    def contents(self) -> tuple[str, list[str], np.ndarray]:
        """Generation, keys and vectors held (for a gate that restarted and lost its ledger)."""
        return self.generation, list(self.keys), self.index.vectors()


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class GateActor:
    """Serialised check-and-insert across all shards (race-free admission).

    The shards outlive the gate: a restarted gate rebuilds its ledger from their contents before
    its first admission (`_adopt`), so everything admitted before it died -- committed or still on
    its way to the writer -- keeps blocking near-duplicates, and a shard that restarts later can
    still be refilled. (Only a shard that dies together with the gate, before the gate has seen
    it again, loses its vectors; then admitted rows may get a near-duplicate.)
    """

    def __init__(self, shard_names: list[str], threshold: float, dim: int = 384) -> None:
        # Shards are found by name: handles as constructor arguments would live in the object store,
        # and a restart could not rebuild the gate once they were gone.
        self.shards = [ray.get_actor(name) for name in shard_names]
        self.threshold = threshold
        self.dim = dim
        self.ledger = ShardLedger(len(self.shards))
        self.lock = asyncio.Lock()
        self.refills = 0
        self.adopted = False

    async def _adopt(self) -> None:
        """Takes over what the shards already hold (nothing on a fresh run); call under the lock."""
        if self.adopted:
            return
        answers = await asyncio.gather(*[s.contents.remote() for s in self.shards])
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
        self.ledger.generations[s], _ = await self.shards[s].reset.remote(vectors, keys)

    async def _best(self, vectors: np.ndarray) -> np.ndarray:
        answers = await asyncio.gather(*[s.best.remote(vectors) for s in self.shards])
        best = np.full(len(vectors), -1.0, dtype=np.float32)
        for s, (generation, sims) in enumerate(answers):
            if self.ledger.stale(s, generation):
                self.refills += 1
                await self._refill(s)
                _, sims = await self.shards[s].best.remote(vectors)
            self.ledger.generations[s] = self.ledger.generations[s] or generation
            best = np.maximum(best, sims)
        return best

    async def admit(self, keys: list[str], vectors: np.ndarray, groups: list[str | None] | None = None) -> list[Decision]:
        async with self.lock:
            await self._adopt()
            best = await self._best(vectors)
            decisions = decide(keys, vectors, best, self.ledger.seen, self.threshold, groups)
            rows = [i for i, d in enumerate(decisions) if d.accepted]
            if rows:
                s = self.ledger.smallest()
                self.ledger.record(s, [keys[i] for i in rows], vectors[rows])
                generation, _ = await self.shards[s].add.remote(vectors[rows], [keys[i] for i in rows])
                if self.ledger.stale(s, generation):
                    self.refills += 1
                    await self._refill(s)
                self.ledger.generations[s] = self.ledger.generations[s] or generation
        return decisions

    async def stats(self) -> dict[str, Any]:
        async with self.lock:
            await self._adopt()  # the driver asks every tick: a restarted gate adopts at once
        sizes = [self.ledger.size(s) for s in range(len(self.shards))]
        return {"vectors": sum(sizes), "shard_sizes": sizes, "refills": self.refills}


@ray.remote(max_restarts=-1, max_task_retries=-1)
class NoveltyWorker:
    """Pulls from the novelty queue, embeds, asks the gate, and routes what it admits."""

    def __init__(self, config: Any, queues: dict[str, Any], gate: Any, writer: Any) -> None:
        from instructflow.actors.core.embedder import Embedder, encoding_executor

        self.cfg = config.novelty
        self.keep_rejects = config.writer.keep_rejects
        self.queues = queues
        self.gate = gate
        self.writer = writer
        device = "cuda" if self.cfg.gpus_per_embedder > 0 else "cpu"
        # Built on the encoding thread, so that torch's own threads start there, at its priority.
        self.encoder_thread = encoding_executor(self.cfg.nice)
        self.embedder = self.encoder_thread.submit(
            Embedder, self.cfg.model, threads=self.cfg.torch_threads, device=device, precision=self.cfg.precision
        ).result()
        self.local_seen: set[str] = set()
        self.admitted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()  # by category
        self.reasons: Counter[str] = Counter()
        self.held = 0  # candidates taken from the queue and not yet passed on
        self.taken = 0
        self.processed = 0
        self.encode_s = 0.0
        self.stopping = False
        self.inflight = asyncio.Semaphore(2)  # overlap one batch's admission with the next encode

    async def run(self) -> None:
        """Runs until the novelty queue is closed and drained."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        ahead: asyncio.Task[list[Candidate]] | None = None
        while True:
            batch = await ahead if ahead is not None else []
            ahead = None
            if not batch:
                batch = await self._take(0.5)
            if not batch:
                if self.stopping or (await self.queues["novelty"].stats.remote())["closed"]:
                    break
                continue
            fresh, dupes = self._prefilter(batch)
            await self._reject(dupes, EXACT)
            self.held -= len(dupes)  # resolved here; `_admit_and_route` releases the fresh ones
            if not fresh:
                continue
            started = loop.time()
            texts = [c.instruction for c in fresh]
            encoding = loop.run_in_executor(self.encoder_thread, self.embedder.encode, texts, self.cfg.encode_batch_size)
            if not self.stopping:
                # Take the next batch while this one encodes, but only if it is already waiting (no
                # wait): then every worker is busy, and the round trip no longer sits between two
                # encodes. From an empty queue nothing is taken ahead, so a new arrival goes to
                # whichever worker is idle rather than to one still encoding.
                ahead = asyncio.create_task(self._take(0))
            vectors = await encoding
            self.encode_s += loop.time() - started
            await self.inflight.acquire()
            task = asyncio.create_task(self._admit_and_route(fresh, vectors))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def _take(self, timeout: float) -> list[Candidate]:
        """Up to `batch_size` candidates from the novelty queue, waiting up to `timeout` for the first."""
        batch = unpack(await self.queues["novelty"].get_batch.remote(self.cfg.batch_size, timeout))
        self.held += len(batch)
        self.taken += len(batch)
        return batch

    def _prefilter(self, batch: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
        fresh, dupes = [], []
        for cand in batch:
            key = cand.id
            if key in self.local_seen:
                dupes.append(cand)
            else:
                self.local_seen.add(key)
                fresh.append(cand)
        return fresh, dupes

    async def _admit_and_route(self, batch: list[Candidate], vectors: np.ndarray) -> None:
        try:
            groups = [c.meta.get("group") for c in batch]
            decisions = await self.gate.admit.remote([c.id for c in batch], vectors, groups)
            answered, unanswered, rejected = [], {}, {}
            for cand, vector, decision in zip(batch, vectors, decisions, strict=True):
                cand.similarity = max(decision.similarity, 0.0)
                if not decision.accepted:
                    rejected.setdefault(decision.reason, []).append(cand)
                    continue
                cand.embedding = vector
                self.admitted[cand.category] += 1
                metrics.inc("candidates", 1, category=cand.category, stage="novel")
                if cand.needs_response:
                    unanswered.setdefault(cand.category, []).append(cand)
                else:
                    answered.append(cand)
                    metrics.inc("candidates", 1, category=cand.category, stage="generated")
            for reason, cands in rejected.items():
                await self._reject(cands, reason)
            for category, cands in unanswered.items():
                await self.queues[f"answer:{category}"].put_batch.remote(cands)
            if answered:
                await self.queues["judge"].put_batch.remote(answered)
            self.processed += len(batch)
        except QueueClosed:
            self.stopping = True
        finally:
            self.held -= len(batch)
            self.inflight.release()

    async def _reject(self, cands: list[Candidate], reason: str) -> None:
        for cand in cands:
            self.rejected[cand.category] += 1
            self.reasons[reason] += 1
            metrics.inc("rejects", 1, category=cand.category, stage="novelty", reason=reason)
        if cands and self.keep_rejects:
            self.writer.reject.remote([(c, reason) for c in cands])

    def stop(self) -> None:
        self.stopping = True

    def stats(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "taken": self.taken,
            "held": self.held,
            "admitted": dict(self.admitted),
            "rejected": dict(self.rejected),
            "reasons": dict(self.reasons),
            "encode_s": round(self.encode_s, 3),
        }
