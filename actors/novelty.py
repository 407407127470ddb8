"""Novelty stage actors: faiss shards, the serialising gate, and the embedding replicas' recipe.

Embedding replicas are `StageActor`s running `core.novelty.NoveltyStage` (built by
`novelty_stage`): they drop exact duplicates they have already seen, embed the rest in batches and
ask the gate to admit them. The gate (`GateActor`, a shell around `core.novelty.Gate`) runs one
admission at a time over every shard (`ShardActor`, a shell around `core.novelty.LocalShard`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import ray

from instructflow.actors import metrics
from instructflow.actors.core.novelty import Decision, Gate, GateStats, LocalShard, NoveltyStage
from instructflow.config import Config
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


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class ShardActor:
    """One faiss shard. A restarted shard comes back empty with a new `generation`; the gate
    notices and refills it from its ledger."""

    def __init__(self, shard: int, dim: int) -> None:
        self.shard = shard
        self.core = LocalShard(dim)

    async def best(self, vectors: np.ndarray) -> tuple[str, np.ndarray]:
        return await self.core.best(vectors)

    async def add(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]:
        answer = await self.core.add(vectors, keys)
        metrics.set_gauge("novelty_vectors", answer[1], shard=str(self.shard))
        return answer

    async def reset(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]:
        return await self.core.reset(vectors, keys)

    async def contents(self) -> tuple[str, list[str], np.ndarray]:
        return await self.core.contents()

    async def remove(self, keys: list[str]) -> tuple[str, int]:
        answer = await self.core.remove(keys)
        metrics.set_gauge("novelty_vectors", answer[1], shard=str(self.shard))
        return answer


class _RemoteShard:
    """A `ShardActor` as the gate's `ShardClient`."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def best(self, vectors: np.ndarray) -> tuple[str, np.ndarray]:
        return await self.handle.best.remote(vectors)

    async def add(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]:
        return await self.handle.add.remote(vectors, keys)

    async def reset(self, vectors: np.ndarray, keys: list[str]) -> tuple[str, int]:
        return await self.handle.reset.remote(vectors, keys)

    async def contents(self) -> tuple[str, list[str], np.ndarray]:
        return await self.handle.contents.remote()

    async def remove(self, keys: list[str]) -> tuple[str, int]:
        return await self.handle.remove.remote(keys)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class GateActor:
    """Serialised check-and-insert across all shards (see `core.novelty.Gate`).

    The shards outlive the gate: a restarted gate rebuilds its ledger from their contents before its
    first admission, so everything admitted before it died keeps blocking near-duplicates. (Only a
    shard that dies together with the gate, before the gate has seen it again, loses its vectors.)
    """

    def __init__(self, shard_names: list[str], threshold: float, dim: int = 384) -> None:
        # Shards are found by name: handles as constructor arguments would live in the object store,
        # and a restart could not rebuild the gate once they were gone.
        self.core = Gate([_RemoteShard(ray.get_actor(n)) for n in shard_names], threshold, dim)

    async def seed(self, keys: list[str], vectors: np.ndarray) -> int:
        return await self.core.seed(keys, vectors)

    async def admit(self, keys: list[str], vectors: np.ndarray, groups: list[str | None] | None = None) -> list[Decision]:
        return await self.core.admit(keys, vectors, groups)

    async def release(self, keys: list[str]) -> int:
        return await self.core.release(keys)

    async def stats(self) -> GateStats:
        return await self.core.stats()


def novelty_stage(config: Config, gate_name: str) -> NoveltyStage:
    """The recipe of one embedding replica: the encoder on its own low-priority thread, the gate by name."""
    from instructflow.actors.core.embedder import Embedder, encoding_executor

    n = config.novelty
    device = "cuda" if n.gpus_per_embedder > 0 else "cpu"
    # Built on the encoding thread, so that torch's own threads start there, at its priority.
    thread = encoding_executor(n.nice)
    embedder = thread.submit(Embedder, n.model, threads=n.torch_threads, device=device, precision=n.precision).result()
    gate = ray.get_actor(gate_name)

    async def encode(texts: list[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(thread, embedder.encode, texts, n.encode_batch_size)

    async def admit(keys: list[str], vectors: np.ndarray, groups: list[str | None]) -> list[Decision]:
        return await gate.admit.remote(keys, vectors, groups)

    return NoveltyStage(encode, admit, batch_size=n.batch_size)
