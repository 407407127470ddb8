import asyncio

import numpy as np
import pytest

from instructflow.actors.core.novelty import (
    EXACT,
    NEAR,
    Gate,
    LocalShard,
    NoveltyShard,
    NoveltyStage,
    decide,
)


def unit(*rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_shard_reports_best_cosine_and_empty_shard():
    shard = NoveltyShard(2)
    assert shard.best(unit([1, 0])).tolist() == [-1.0]
    shard.add(unit([1, 0], [0, 1]))
    best = shard.best(unit([1, 1], [1, 0]))
    assert best == pytest.approx([np.sqrt(0.5), 1.0], abs=1e-6)
    assert len(shard) == 2


def test_shard_gives_back_what_it_holds():
    # a restarted gate rebuilds its ledger from these
    shard = NoveltyShard(2)
    assert shard.vectors().shape == (0, 2)
    vectors = unit([1, 0], [1, 1])
    shard.add(vectors)
    assert np.allclose(shard.vectors(), vectors)


def test_decide_rejects_exact_keys_seen_before_and_within_batch():
    vecs = unit([1, 0], [0, 1], [1, 1])
    out = decide(["a", "b", "b"], vecs, np.full(3, -1.0), seen={"a"}, threshold=0.99)
    assert [(d.accepted, d.reason) for d in out] == [(False, EXACT), (True, None), (False, EXACT)]


def test_decide_compares_members_of_the_same_batch():
    vecs = unit([1, 0], [1, 0.01], [0, 1])
    out = decide(["x", "y", "z"], vecs, np.full(3, -1.0), seen=set(), threshold=0.9)
    assert [d.accepted for d in out] == [True, False, True]
    assert out[1].reason == NEAR and out[1].similarity > 0.99


def test_decide_ignores_rejected_batch_members_as_neighbours():
    # y is rejected by the index; z is close to y only, so z must still pass.
    vecs = unit([0, 1], [1, 0], [1, 0.3])
    out = decide(["x", "y", "z"], vecs, np.array([-1.0, 0.95, 0.2]), seen=set(), threshold=0.9)
    assert [d.accepted for d in out] == [True, False, True]


def gate(dim, shards, threshold):
    return Gate([LocalShard(dim) for _ in range(shards)], threshold, dim)


def test_gate_never_admits_two_near_duplicates_across_batches_and_shards():
    rng = np.random.default_rng(0)
    g = gate(dim=16, shards=3, threshold=0.95)
    base = rng.normal(size=(50, 16)).astype(np.float32)
    noisy = base + rng.normal(scale=0.01, size=base.shape).astype(np.float32)
    vecs = np.concatenate([base, noisy])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    keys = [f"k{i}" for i in range(100)]
    accepted, reasons = [], []

    async def main():
        for start in range(0, 100, 7):
            decisions = await g.admit(keys[start : start + 7], vecs[start : start + 7])
            accepted.extend(start + i for i, d in enumerate(decisions) if d.accepted)
            reasons.extend(d.reason for d in decisions if not d.accepted)
        return await g.stats()

    stats = asyncio.run(main())
    kept = vecs[accepted]
    sims = kept @ kept.T
    np.fill_diagonal(sims, -1)
    assert sims.max() < 0.95
    assert len(accepted) == 50
    assert stats.vectors == 50 and sum(len(s.index) for s in g.shards) == 50
    assert max(stats.shard_sizes) - min(stats.shard_sizes) <= 7
    assert reasons == [NEAR] * 50


def test_seed_loads_committed_rows_without_checks():
    g = gate(dim=2, shards=2, threshold=0.9)

    async def main():
        await g.seed(["a", "b", "c"], unit([1, 0], [0, 1], [1, 1]))
        return await g.admit(["a", "d"], unit([0.5, 0.5], [1, 0.02]))

    assert [d.reason for d in asyncio.run(main())] == [EXACT, NEAR]


def test_released_instructions_block_no_later_near_duplicate_but_stay_exact_duplicates():
    """An admitted instruction whose answer made no row is taken out of the index (ledger and
    shard); its near-duplicate is admitted later, the very same key is still an exact duplicate,
    the others are untouched, and a restarted gate or shard agrees."""
    shards = [LocalShard(2), LocalShard(2)]
    g = Gate(shards, 0.9, 2)

    async def main():
        await g.admit(["a", "b", "c"], unit([1, 0], [0, 1], [1, 1]))
        assert await g.release(["a", "unknown"]) == 1
        assert await g.release([]) == 0
        later = await g.admit(["a", "a2", "b2"], unit([1, 0], [1, 0.02], [0.02, 1]))
        fresh_gate = Gate(shards, 0.9, 2)  # adopts what the shards hold after the release
        again = await fresh_gate.admit(["a3"], unit([1, 0.03]))
        return later, again, await g.stats()

    later, again, stats = asyncio.run(main())
    assert [d.reason for d in later] == [EXACT, None, NEAR]  # a2 passes now that a is gone
    assert [d.reason for d in again] == [NEAR]  # a2 holds that place now
    assert stats.released == 1 and stats.vectors == 3  # b, c, a2
    assert sorted(k for shard in shards for k in shard.keys) == ["a2", "b", "c"]
    assert sum(len(shard.index) for shard in shards) == 3


def test_gate_refills_a_shard_that_restarted_empty_and_a_new_gate_adopts_the_shards():
    shards = [LocalShard(2), LocalShard(2)]
    g = Gate(shards, 0.9, 2)

    async def main():
        await g.admit(["a", "b"], unit([1, 0], [0, 1]))
        shards[0].__init__(2)  # the shard actor restarted: empty, new generation
        first = await g.admit(["c"], unit([1, 0.01]))
        fresh_gate = Gate(shards, 0.9, 2)  # the gate actor restarted: it adopts the shards' contents
        second = await fresh_gate.admit(["d", "b"], unit([0.01, 1], [1, 1]))
        return first, second, g.refills

    first, second, refills = asyncio.run(main())
    assert first[0].reason == NEAR and refills == 1
    assert [d.reason for d in second] == [NEAR, EXACT]


def test_novelty_stage_routes_admitted_candidates_and_rejects_duplicates():
    from instructflow.instructors.record import Candidate

    vectors = {"alpha": [1, 0], "beta": [0, 1], "alpha again": [1, 0.01], "gamma": [0.7, -0.7]}

    async def encode(texts):
        return unit(*[vectors[t] for t in texts])

    g = gate(dim=2, shards=1, threshold=0.9)
    stage = NoveltyStage(encode, g.admit, batch_size=8)
    a = Candidate("general", "alpha")
    b = Candidate("trivia", "beta", response="B")
    a2 = Candidate("general", "alpha again")
    dup = Candidate("general", "alpha")
    c = Candidate("general", "gamma")

    async def main():
        first = await stage.process([a, b])
        second = await stage.process([a2, dup, c])
        return first, second

    first, second = asyncio.run(main())
    assert first.outputs == {"answer:general": [a], "judge": [b]}
    assert a.similarity is None and a.embedding is not None  # compared with nothing: no similarity
    assert second.outputs == {"answer:general": [c]}
    assert [(x, r) for x, r in second.rejected] == [(dup, EXACT), (a2, NEAR)]
    assert stage.detail().encoded == 4  # the exact duplicate was never encoded


def test_ledger_tracks_contents_and_detects_a_restarted_shard():
    from instructflow.actors.core.novelty import ShardLedger

    ledger = ShardLedger(2)
    ledger.record(0, ["a", "b"], unit([1, 0], [0, 1]))
    ledger.record(0, ["c"], unit([1, 1]))
    assert ledger.smallest() == 1 and ledger.seen == {"a", "b", "c"}
    ids, vecs = ledger.contents(0, 2)
    assert ids == ["a", "b", "c"] and vecs.shape == (3, 2)
    assert ledger.contents(1, 2)[1].shape == (0, 2)
    assert not ledger.stale(0, "g1")  # never seen: nothing to compare with
    ledger.generations[0] = "g1"
    assert not ledger.stale(0, "g1") and ledger.stale(0, "g2")


def test_members_of_a_group_are_not_compared_with_each_other():
    vecs = unit([1, 0], [1, 0.05], [1, 0.06])
    out = decide(["t", "f", "x"], vecs, np.full(3, -1.0), seen=set(), threshold=0.9, groups=["g", "g", None])
    assert [d.accepted for d in out] == [True, True, False]  # the pair passes; a third look-alike does not


def test_pack_keeps_a_group_in_one_queue_item_in_order():
    from instructflow.actors.core.ledger import members
    from instructflow.actors.novelty import pack
    from instructflow.instructors.record import Candidate

    a, b, c = (Candidate("x", f"instruction {i}") for i in range(3))
    a.meta["group"] = c.meta["group"] = "g"
    items = pack([a, b, c])
    assert items == [(a, c), b]
    assert members(items) == [a, c, b]


def _decide_by_the_definition(keys, vectors, index_best, seen, threshold, groups):
    """`decide` written the slow, obvious way: one comparison per pair."""
    out, batch_keys, accepted = [], set(), []
    for row, key in enumerate(keys):
        if key in seen or key in batch_keys:
            out.append((False, EXACT))
            continue
        batch_keys.add(key)
        best = float(index_best[row])
        for other in accepted:
            if groups[row] is None or groups[other] != groups[row]:
                best = max(best, float(vectors[other] @ vectors[row]))
        if best >= threshold:
            out.append((False, NEAR))
        else:
            accepted.append(row)
            out.append((True, None))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_decide_agrees_with_its_definition_on_random_batches(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    base = rng.normal(size=(8, 6)).astype(np.float32)  # few directions, so near-duplicates are common
    vecs = base[rng.integers(0, 8, n)] + rng.normal(scale=0.3, size=(n, 6)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    keys = [f"k{i}" for i in rng.integers(0, n + 5, n)]  # some repeated keys
    groups = [None if g < 0 else f"g{g}" for g in rng.integers(-3, 4, n)]
    index_best = rng.uniform(-1, 1, n).astype(np.float32)
    seen = {f"k{i}" for i in range(0, n, 7)}
    got = decide(keys, vecs, index_best, seen, 0.9, groups)
    assert [(d.accepted, d.reason) for d in got] == _decide_by_the_definition(keys, vecs, index_best, seen, 0.9, groups)
    assert any(d.reason == NEAR for d in got) or n < 10  # the batches do exercise the near rule
