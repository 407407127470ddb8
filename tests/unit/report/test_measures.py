"""The report's measures against hand-computed values and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from instructflow.config.schema import Price
from instructflow.report import measures
from instructflow.report.measures import (
    clusters,
    distinct_n,
    mean_pairwise_cosine_distance,
    nearest_similarity,
    neighbour_scan,
    pca_2d,
    price_for,
    row_costs,
    tokens,
)
from tests.unit.report.runs import unit


def test_tokens_are_lower_case_words_and_single_punctuation_marks() -> None:
    assert tokens("Don't PANIC, 42 times!") == ["don", "'", "t", "panic", ",", "42", "times", "!"]


def test_distinct_n_pools_a_group_and_never_joins_two_texts() -> None:
    # tokens: [a b a b] and [b a]; unigrams 6 (2 distinct); bigrams ab ba ab | ba -> 4 (2 distinct);
    # trigrams aba bab | (none) -> 2 (2 distinct). A bigram "b b" across the texts must not appear.
    assert distinct_n(["a b a b", "B a"]) == {1: 2 / 6, 2: 2 / 4, 3: 1.0}
    assert distinct_n(["one two", "three"], ns=(3,)) == {3: None}


def test_mean_pairwise_cosine_distance_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    vectors = np.stack([unit(rng, 16) for _ in range(40)])
    pairs = [1 - float(vectors[i] @ vectors[j]) for i, j in itertools.combinations(range(40), 2)]
    assert mean_pairwise_cosine_distance(vectors) == pytest.approx(np.mean(pairs), abs=1e-6)
    assert mean_pairwise_cosine_distance(vectors[:1]) is None
    assert mean_pairwise_cosine_distance(np.stack([vectors[0]] * 5)) == pytest.approx(0.0, abs=1e-6)


def test_the_scan_finds_every_nearest_neighbour_and_close_pair_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measures, "_BLOCK_CELLS", 7 * 30)  # blocks of 7 rows: pairs span blocks
    rng = np.random.default_rng(4)
    vectors = np.stack([unit(rng, 32) for _ in range(30)])
    vectors[7] = vectors[3]  # an exact duplicate ties with the row itself
    vectors[22] = vectors[12]
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    scan = neighbour_scan(vectors, 0.5)
    assert scan.nearest == pytest.approx(sims.max(axis=1), abs=1e-5)
    assert scan.nearest[[3, 7]] == pytest.approx([1.0, 1.0], abs=1e-5)
    expected = sorted((i, j) for i in range(30) for j in range(i + 1, 30) if sims[i, j] >= 0.5)
    assert sorted(map(tuple, scan.pairs.tolist())) == expected and (3, 7) in expected and (12, 22) in expected
    others = np.stack([unit(rng, 32) for _ in range(5)])
    assert nearest_similarity(vectors, others) == pytest.approx((vectors @ others.T).max(axis=1), abs=1e-5)
    assert np.isnan(neighbour_scan(vectors[:1], 0.5).nearest).all()


def test_clusters_are_connected_components_at_or_above_the_threshold() -> None:
    rng = np.random.default_rng(5)
    e = np.eye(64, dtype=np.float32)
    turn = np.arccos(0.93)
    a, b, c = (np.cos(k * turn) * e[0] + np.sin(k * turn) * e[1] for k in range(3))
    assert float(a @ c) < 0.9  # a~b and b~c pass 0.9, a~c does not: still one cluster
    at = [e[2], np.float32(0.9) * e[2] + np.float32(np.sqrt(0.19)) * e[3]]  # exactly 0.9 counts
    rest = [unit(rng, 64) for _ in range(20)]  # about 0.12 apart in 64 dimensions
    vectors = np.stack([*rest[:5], a, *rest[5:10], b, *at, *rest[10:], c])
    found = clusters(neighbour_scan(vectors, 0.9))
    assert [g.tolist() for g in found] == [[5, 11, len(vectors) - 1], [12, 13]]
    assert [g.tolist() for g in clusters(neighbour_scan(vectors, 0.92))] == [[5, 11, len(vectors) - 1]]
    assert clusters(neighbour_scan(vectors, 0.95)) == []


def test_pca_finds_the_main_axis_and_reports_variance_shares() -> None:
    rng = np.random.default_rng(6)
    points = np.zeros((500, 8))
    points[:, 2] = rng.normal(0, 10, 500)  # most variance along axis 2, then axis 5
    points[:, 5] = rng.normal(0, 3, 500)
    points += rng.normal(0, 0.1, points.shape)
    coords, explained = pca_2d(points)
    assert abs(np.corrcoef(coords[:, 0], points[:, 2])[0, 1]) > 0.999
    assert abs(np.corrcoef(coords[:, 1], points[:, 5])[0, 1]) > 0.99
    assert explained[0] > 0.85 and 0.05 < explained[1] < 0.15
    again, _ = pca_2d(points[::-1])  # signs are fixed, so the picture does not flip between runs
    assert again[::-1] == pytest.approx(coords)


def test_cost_per_row_uses_the_longest_priced_prefix_and_leaves_unpriced_rows_out() -> None:
    prices = {"gpt-4o": Price(prompt_per_1k=1.0, completion_per_1k=2.0),
              "gpt-4o-mini": Price(prompt_per_1k=0.1, completion_per_1k=0.2)}
    assert price_for(prices, "gpt-4o-mini-2024-07-18") is prices["gpt-4o-mini"]
    cost, unpriced = row_costs(
        ["gpt-4o-mini-2024-07-18", "gpt-4o", "llama"], np.array([1000, 500, 10]), np.array([2000, 0, 10]), prices
    )
    assert cost[:2] == pytest.approx([0.5, 0.5]) and np.isnan(cost[2]) and unpriced == 1
