"""The numbers behind a report: lengths, distinct-n, embedding spread, neighbours and duplicates.

Pure functions over lists of strings and unit-vector matrices; docs/report.md defines each measure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import faiss
import numpy as np

from instructflow.config.schema import Price

# Words and single punctuation marks, lower-cased: "Don't panic!" -> don ' t panic !
_TOKEN = re.compile(r"\w+|[^\w\s]")
_BLOCK = 4096  # query rows per faiss call: bounds the memory of one range search


def tokens(text: str) -> list[str]:
    """The tokens distinct-n counts: runs of word characters and single punctuation marks, lower case."""
    return _TOKEN.findall(text.lower())


def word_counts(texts: Sequence[str]) -> np.ndarray:
    """Whitespace-separated words per text."""
    return np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))


def distinct_n(texts: Sequence[str], ns: Sequence[int] = (1, 2, 3)) -> dict[int, float | None]:
    """distinct-n (Li et al., 2016): distinct n-grams / all n-grams, pooled over `texts`.

    N-grams never cross from one text into the next. None for an n with no n-gram at all.
    """
    vocab: dict[str, int] = {}
    ids = [np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokens(text)), dtype=np.int64) for text in texts]
    size = max(len(vocab), 1)
    result: dict[int, float | None] = {}
    for n in ns:
        columns = [_ngram_columns(row, n) for row in ids if len(row) >= n]
        if not columns:
            result[n] = None
            continue
        grams = np.concatenate(columns, axis=0)
        if size ** n < 2**62:  # pack each n-gram into one integer: much faster to sort
            packed = grams @ (size ** np.arange(n - 1, -1, -1, dtype=np.int64))
            unique = len(np.unique(packed))
        else:
            unique = len(np.unique(grams, axis=0))
        result[n] = unique / len(grams)
    return result


def _ngram_columns(row: np.ndarray, n: int) -> np.ndarray:
    """The n-grams of one token-id row as a (len - n + 1) x n array."""
    return np.lib.stride_tricks.sliding_window_view(row, n)


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


def pca_2d(vectors: np.ndarray, fit_rows: int = 20_000, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Projects rows onto their first two principal components (numpy SVD of the centred rows).

    The components are fitted on at most `fit_rows` rows drawn with `seed`, then every row is
    projected. Each component's sign is fixed so that its largest loading is positive, which makes
    the picture the same from run to run.

    Returns:
        (n x 2 coordinates, share of the variance each component explains).
    """
    data = vectors.astype(np.float64)
    fit = data
    if len(data) > fit_rows:
        fit = data[np.random.default_rng(seed).choice(len(data), fit_rows, replace=False)]
    mean = fit.mean(axis=0)
    _, singular, components = np.linalg.svd(fit - mean, full_matrices=False)
    components = components[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    variance = singular**2
    explained = (variance[:2] / variance.sum()).tolist() if variance.sum() > 0 else [0.0, 0.0]
    coords = (data - mean) @ components.T
    if coords.shape[1] < 2:  # a single row or dimension: pad the missing axis
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        explained += [0.0] * (2 - len(explained))
    return coords, explained


def _index(vectors: np.ndarray) -> faiss.IndexFlatIP:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def nearest_similarity(vectors: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity of each row to its nearest neighbour: another row of `vectors`, or, when
    `others` is given, any row of `others`. Exact (faiss flat inner-product search). NaN for a row
    that has no neighbour (a set of one row)."""
    queries = np.ascontiguousarray(vectors, dtype=np.float32)
    if others is not None:
        if len(others) == 0 or len(queries) == 0:
            return np.full(len(queries), np.nan)
        sims, _ = _index(others).search(queries, 1)
        return sims[:, 0].astype(np.float64)
    if len(queries) < 2:
        return np.full(len(queries), np.nan)
    sims, found = _index(queries).search(queries, 2)
    # A row's best match is itself unless an identical vector ties with it; either way, the best
    # match that is not the row itself is its nearest neighbour.
    own = found[:, 0] == np.arange(len(queries))
    return np.where(own, sims[:, 1], sims[:, 0]).astype(np.float64)


def near_duplicate_clusters(vectors: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Groups of rows joined by pairs with cosine similarity at or above `threshold`.

    The connected components of the graph whose edges are those pairs (so a chain a~b~c is one
    cluster even when a and c are further apart). Found with faiss range searches over the rows in
    blocks. Returns the row indices of each cluster of two or more rows, largest first.
    """
    n = len(vectors)
    if n < 2:
        return []
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    index = _index(data)
    # faiss keeps results strictly above the radius; step just below the threshold to include it.
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, _BLOCK):
        limits, _, found = index.range_search(data[start : start + _BLOCK], radius)
        for offset in range(len(limits) - 1):
            i = start + offset
            for j in found[limits[offset] : limits[offset + 1]]:
                if j > i:
                    a, b = root(i), root(int(j))
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    roots = np.array([root(i) for i in range(n)])
    _, inverse, counts = np.unique(roots, return_inverse=True, return_counts=True)
    groups = [np.flatnonzero(inverse == g) for g in np.flatnonzero(counts > 1)]
    return sorted(groups, key=lambda g: (-len(g), int(g[0])))


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
