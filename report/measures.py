"""The numbers behind a report: lengths, distinct-n, embedding spread, neighbours and duplicates.

Pure functions over lists of strings and unit-vector matrices; docs/report.md defines each measure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from instructflow.config.schema import Price

# Words and single punctuation marks, lower-cased: "Don't panic!" -> don ' t panic !
_TOKEN = re.compile(r"\w+|[^\w\s]")
_BLOCK_CELLS = 1 << 26  # similarities computed at once: 64 Mi float32, 256 MB


def tokens(text: str) -> list[str]:
    """The tokens distinct-n counts: runs of word characters and single punctuation marks, lower case."""
    return _TOKEN.findall(text.lower())


def word_counts(texts: Sequence[str]) -> np.ndarray:
    """Whitespace-separated words per text."""
    return np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))


class Tokenised:
    """Texts as token ids, tokenised once so that many groups of them can be measured.

    Args:
        texts: the texts; see `tokens` for what a token is.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        vocab: dict[str, int] = {}
        self.rows = [np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokens(x)), dtype=np.int64) for x in texts]
        self.vocab_size = max(len(vocab), 1)

    def distinct_n(self, rows: Sequence[int] | np.ndarray | None = None, ns: Sequence[int] = (1, 2, 3)) -> dict[int, float | None]:
        """distinct-n (Li et al., 2016) of the texts at `rows` (all when None): distinct n-grams
        divided by all n-grams, pooled over the texts. N-grams never cross from one text into the
        next. None for an n with no n-gram at all."""
        picked = self.rows if rows is None else [self.rows[i] for i in rows]
        # One sequence with -1 between texts; an n-gram that contains a -1 spans two texts.
        parts = [np.append(row, -1) for row in picked]
        sequence = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        result: dict[int, float | None] = {}
        for n in ns:
            if len(sequence) < n:
                result[n] = None
                continue
            columns = np.stack([sequence[k : len(sequence) - n + 1 + k] for k in range(n)], axis=1)
            grams = columns[(columns >= 0).all(axis=1)]
            if len(grams) == 0:
                result[n] = None
            elif self.vocab_size**n < 2**62:  # pack each n-gram into one integer: much faster to sort
                result[n] = len(np.unique(grams @ (self.vocab_size ** np.arange(n - 1, -1, -1, dtype=np.int64)))) / len(grams)
            else:
                result[n] = len(np.unique(grams, axis=0)) / len(grams)
        return result


def distinct_n(texts: Sequence[str], ns: Sequence[int] = (1, 2, 3)) -> dict[int, float | None]:
    """distinct-n of `texts` pooled (see `Tokenised.distinct_n`)."""
    return Tokenised(texts).distinct_n(None, ns)


def mean_pairwise_cosine_distance(vectors: np.ndarray) -> float | None:
    """Mean of 1 - cos(a, b) over all pairs of distinct rows of unit `vectors`; None below two rows.

    Exact and O(n d): the sum of all pairwise inner products is |sum of the vectors|^2, and the n
    self-products (each 1) are taken out of it.
    """
    n = len(vectors)
    if n < 2:
        return None
    total = vectors.astype(np.float64).sum(axis=0)
    self_products = float(np.einsum("ij,ij->", vectors, vectors, dtype=np.float64))
    mean_cos = (float(total @ total) - self_products) / (n * (n - 1))
    return 1.0 - mean_cos


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Projects rows onto their first two principal components.

    PCA with numpy: the eigenvectors of the covariance matrix (d x d, so the cost is O(n d^2) and
    fine for 100k rows) with the two largest eigenvalues. Each component's sign is fixed so that its
    largest loading is positive, which keeps the picture the same from run to run.

    Returns:
        (n x 2 coordinates, share of the total variance each component explains).
    """
    data = vectors.astype(np.float64)
    centred = data - data.mean(axis=0)
    covariance = centred.T @ centred / max(len(data) - 1, 1)
    values, vectors_ = np.linalg.eigh(covariance)  # ascending eigenvalues
    order = np.argsort(values)[::-1][:2]
    components = vectors_[:, order].T
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    total = float(values.clip(min=0).sum())
    explained = [float(max(v, 0.0)) / total if total > 0 else 0.0 for v in values[order]]
    coords = centred @ components.T
    if coords.shape[1] < 2:  # one-dimensional vectors: pad the missing axis
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        explained += [0.0] * (2 - len(explained))
    return coords, explained


@dataclass
class NeighbourScan:
    """What one pass over all pairs of rows found.

    Attributes:
        nearest: cosine similarity of each row to its most similar other row (NaN below two rows).
        pairs: (k, 2) row indices i < j of every pair at or above the threshold.
        threshold: the threshold `pairs` used.
    """

    nearest: np.ndarray
    pairs: np.ndarray
    threshold: float


def _blocks(rows: int, columns: int) -> range:
    """Starts of query blocks sized so that one block of similarities stays near 256 MB."""
    size = max(16, _BLOCK_CELLS // max(columns, 1))
    return range(0, rows, size)


def neighbour_scan(vectors: np.ndarray, threshold: float) -> NeighbourScan:
    """Exact nearest neighbours and near-duplicate pairs of unit `vectors`, in one pass.

    Every pair's cosine similarity is computed (block by block, as float32 matrix products, so
    O(n^2 d) work: docs/report.md has measured times), which finds each row's nearest other row and
    every pair at or above `threshold` together.
    """
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(data)
    nearest = np.full(n, np.nan)
    found: list[np.ndarray] = []
    step = _blocks(n, n).step
    for start in _blocks(n, n):
        sims = data[start : start + step] @ data.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # a row is not its own neighbour
        if n > 1:
            nearest[start : start + len(sims)] = sims.max(axis=1)
        i, j = np.nonzero(sims >= np.float32(threshold))
        keep = start + i < j
        found.append(np.stack([start + i[keep], j[keep]], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    return NeighbourScan(nearest, pairs, threshold)


def nearest_similarity(vectors: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `vectors` to its most similar row of `others` (exact);
    NaN everywhere when `others` is empty."""
    if len(others) == 0:
        return np.full(len(vectors), np.nan)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    targets = np.ascontiguousarray(others, dtype=np.float32)
    best = np.empty(len(data))
    step = _blocks(len(data), len(targets)).step
    for start in _blocks(len(data), len(targets)):
        best[start : start + step] = (data[start : start + step] @ targets.T).max(axis=1)
    return best


def clusters(scan: NeighbourScan) -> list[np.ndarray]:
    """Groups of rows joined by the scan's pairs: the connected components of the graph whose edges
    are the pairs (so a chain a~b~c is one cluster even when a and c are further apart). Returns
    the row indices of each group of two or more rows, largest first."""
    n = len(scan.nearest)
    if len(scan.pairs) == 0:
        return []
    graph = coo_matrix((np.ones(len(scan.pairs), dtype=np.int8), (scan.pairs[:, 0], scan.pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    return sorted((g for g in groups if counts[inverse[g[0]]] > 1), key=lambda g: (-len(g), int(g[0])))


def price_for(prices: dict[str, Price], model: str) -> Price | None:
    """The price of `model`, or of the longest priced name it starts with (a server may answer with
    a dated name such as gpt-4o-mini-2024-07-18); the same rule as the budget's."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name)]
    return prices[max(matches, key=len)] if matches else None


def row_costs(
    models: Sequence[str], prompt: np.ndarray, completion: np.ndarray, prices: dict[str, Price]
) -> tuple[np.ndarray, int]:
    """USD per row from its tokens and its model's price; NaN for a row whose model has no price.

    Args:
        models: the teacher model of each row.
        prompt: prompt tokens of each row.
        completion: completion tokens of each row.
        prices: `Price` by model name; a dated name (gpt-4o-mini-2024-07-18) takes the price of the
            longest priced name it starts with, as the budget does.

    Returns:
        (cost of each row, number of rows without a price).
    """
    per_model: dict[str, tuple[float, float] | None] = {}
    cost = np.full(len(models), np.nan)
    for i, model in enumerate(models):
        if model not in per_model:
            price = price_for(prices, model)
            per_model[model] = None if price is None else (price.prompt_per_1k, price.completion_per_1k)
        rate = per_model[model]
        if rate is not None:
            cost[i] = (prompt[i] * rate[0] + completion[i] * rate[1]) / 1000.0
    return cost, int(np.isnan(cost).sum())
