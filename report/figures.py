"""The report's plots: each function measures one thing and draws it as a PNG, with its numbers.

Plots are drawn on `matplotlib.figure.Figure` objects, which render with the Agg backend and touch
no global pyplot state. The run is drawn in blue, the reference set (when there is one) in orange.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from instructflow.report.data import Dataset
from instructflow.report.measures import (
    Tokenised,
    mean_pairwise_cosine_distance,
    nearest_similarity,
    pca_2d,
    word_counts,
)

RUN_COLOUR, REFERENCE_COLOUR = "#1f77b4", "#ff7f0e"
MAX_POINTS = 5000  # most points one set draws in the projection (a seeded sample beyond that)


@dataclass
class Plot:
    """One figure of the report.

    Attributes:
        id: file stem and anchor (``lengths`` -> ``lengths.png``).
        title: heading on the page.
        caption: what is shown and how it is measured.
        png: the rendered image.
        data: the numbers behind the plot (JSON-serialisable), written to figures.json.
        table: optional rows for an HTML table under the plot (list of dicts, same keys).
    """

    id: str
    title: str
    caption: str
    png: bytes
    data: dict[str, Any]
    table: list[dict[str, Any]] = field(default_factory=list)


def render(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg backend, 100 dpi)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def category_colours(categories: Sequence[str]) -> dict[str, Any]:
    """A colour per category, in order: tab20's ten strong shades first, then its ten light ones, so
    that up to ten categories get clearly different colours and all 20 built-in ones get their own."""
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return {c: palette(order[i % 20]) for i, c in enumerate(categories)}


def groups(dataset: Dataset) -> dict[str, np.ndarray]:
    """Row indices of each category, in order of first appearance."""
    labels = np.asarray(dataset.category, dtype=object)
    return {c: np.flatnonzero(labels == c) for c in dataset.categories()}


def panel_height(rows: int) -> float:
    return max(2.5, 0.32 * rows + 1.2)


# ------------------------------------------------------------------------------------------ plots


def rows_per_category(run: Dataset, targets: dict[str, int], reference: Dataset | None) -> Plot:
    """Committed rows per category, with each category's target."""
    counts = {c: len(rows) for c, rows in groups(run).items()}
    names = list(dict.fromkeys([*targets, *counts]))
    panels = 2 if reference is not None else 1
    fig = Figure(figsize=(9 if panels == 1 else 12, panel_height(len(names))))
    ax = fig.add_subplot(1, panels, 1)
    y = np.arange(len(names))
    ax.barh(y, [counts.get(c, 0) for c in names], color=RUN_COLOUR, label="committed")
    if targets:
        ax.scatter([targets.get(c, np.nan) for c in names], y, marker="|", s=200, color="black", label="target")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False, fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.set_title(run.label, loc="left")
    data: dict[str, Any] = {"run": counts, "targets": targets}
    if reference is not None:
        ref_counts = {c: len(rows) for c, rows in groups(reference).items()}
        top = sorted(ref_counts.items(), key=lambda kv: -kv[1])[:25]
        rax = fig.add_subplot(1, 2, 2)
        rax.barh(np.arange(len(top)), [n for _, n in top], color=REFERENCE_COLOUR)
        rax.set_yticks(np.arange(len(top)), [c for c, _ in top])
        rax.invert_yaxis()
        rax.set_xlabel("rows")
        rax.set_title(reference.label if len(top) == len(ref_counts) else f"{reference.label} (25 largest)", loc="left")
        data["reference"] = ref_counts
    fig.tight_layout()
    caption = "Rows committed per category; a black bar marks the category's target (run.json)."
    return Plot("rows_per_category", "Rows per category", caption, render(fig), data)


def _log_edges(*samples: np.ndarray) -> np.ndarray:
    top = max((int(s.max()) for s in samples if len(s)), default=1)
    return np.unique(np.round(np.geomspace(1, top + 1, 40))).astype(float)


def _summary(values: np.ndarray) -> dict[str, float | None]:
    if len(values) == 0:
        return {"mean": None, "p50": None, "p90": None, "max": None}
    return {
        "mean": float(values.mean()),
        "p50": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "max": float(values.max()),
    }


def lengths(run: Dataset, reference: Dataset | None) -> Plot:
    """Histograms of instruction and response lengths in words."""
    fig = Figure(figsize=(12, 3.8))
    data: dict[str, Any] = {"unit": "whitespace-separated words"}
    shares = reference is not None  # sets of different sizes compare as shares of their rows
    for position, field_name in enumerate(("instruction", "response"), 1):
        ax = fig.add_subplot(1, 2, position)
        sets = [(run, RUN_COLOUR)] + ([(reference, REFERENCE_COLOUR)] if reference is not None else [])
        counts = {ds.label: word_counts(getattr(ds, field_name)) for ds, _ in sets}
        edges = _log_edges(*counts.values())
        entry: dict[str, Any] = {"bin_edges": edges.tolist()}
        for ds, colour in sets:
            values = counts[ds.label]
            hist, _ = np.histogram(values, bins=edges)
            weights = np.full(len(values), 1 / max(len(values), 1)) if shares else None
            ax.hist(values, bins=edges, weights=weights, histtype="step" if shares else "bar",
                    linewidth=2 if shares else 1, color=colour, label=ds.label, alpha=1.0 if shares else 0.85)
            entry[ds.label] = {"counts": hist.tolist(), **_summary(values)}
        ax.set_xscale("log")
        ax.set_xlabel(f"{field_name} length (words, log scale)")
        ax.set_ylabel("share of rows" if shares else "rows")
        ax.legend(fontsize=8)
        data[field_name] = entry
    fig.tight_layout()
    caption = (
        "Instruction and response lengths in whitespace-separated words, on logarithmic bins."
        + (" Each set's bars are shares of its rows, so that sets of different sizes compare." if shares else "")
    )
    return Plot("lengths", "Instruction and response lengths", caption, render(fig), data)


def distinct(run: Dataset, reference: Dataset | None, seed: int = 0) -> Plot:
    """distinct-1/2/3 of the responses per category, and for whole sets."""
    tokenised = Tokenised(run.response)
    rows: dict[str, dict[str, Any]] = {}
    for category, index in groups(run).items():
        rows[category] = _distinct_row(tokenised, index)
    rows[f"{run.label}: all"] = _distinct_row(tokenised, np.arange(len(run)))
    if reference is not None:
        ref_tokenised = Tokenised(reference.response)
        rows[f"{reference.label}: all"] = _distinct_row(ref_tokenised, np.arange(len(reference)))
        # distinct-n falls as a group grows: also measure the larger set at the smaller one's size
        small, large = sorted([(len(run), run.label, tokenised), (len(reference), reference.label, ref_tokenised)], key=lambda s: s[0])
        if large[0] > small[0]:
            sample = np.sort(np.random.default_rng(seed).choice(large[0], small[0], replace=False))
            rows[f"{large[1]}: {small[0]} random rows"] = _distinct_row(large[2], sample)
    names = list(rows)
    fig = Figure(figsize=(9, panel_height(len(names))))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(names))
    for n, marker in ((1, "o"), (2, "s"), (3, "^")):
        values = [rows[name][f"distinct_{n}"] for name in names]
        ax.scatter([np.nan if v is None else v for v in values], y, marker=marker, s=45, label=f"distinct-{n}")
    colours = [REFERENCE_COLOUR if reference is not None and name.startswith(f"{reference.label}:") else "black" for name in names]
    ax.set_yticks(y, names)
    for tick, colour in zip(ax.get_yticklabels(), colours, strict=True):
        tick.set_color(colour)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("distinct n-grams / all n-grams (responses)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    caption = (
        "distinct-n: the number of distinct n-grams divided by the number of n-grams over all responses "
        "of a group (n-grams never span two responses). Tokens are lower-cased runs of letters/digits "
        "and single punctuation marks. The value falls as a group grows, so compare groups of similar size."
    )
    return Plot("distinct_n", "Lexical diversity of responses (distinct-1/2/3)", caption, render(fig), {"groups": rows})


def _distinct_row(tokenised: Tokenised, rows: np.ndarray) -> dict[str, Any]:
    values = tokenised.distinct_n(rows)
    return {"rows": len(rows), **{f"distinct_{n}": v for n, v in values.items()}}


def _vector_groups(dataset: Dataset) -> dict[str, np.ndarray]:
    """The embedding rows of each category (positions in `dataset.vectors`)."""
    if dataset.vectors is None or dataset.vector_rows is None:
        return {}
    labels = np.asarray(dataset.category, dtype=object)[dataset.vector_rows]
    return {c: np.flatnonzero(labels == c) for c in dataset.categories() if (labels == c).any()}


def spread(run: Dataset, reference: Dataset | None) -> Plot | None:
    """Mean pairwise cosine distance of the instruction embeddings, per category and overall."""
    if run.vectors is None:
        return None
    values: dict[str, dict[str, Any]] = {}
    for category, index in _vector_groups(run).items():
        values[category] = {"rows": len(index), "mean_cosine_distance": mean_pairwise_cosine_distance(run.vectors[index])}
    values[f"{run.label}: all"] = {"rows": len(run.vectors), "mean_cosine_distance": mean_pairwise_cosine_distance(run.vectors)}
    if reference is not None and reference.vectors is not None:
        values[f"{reference.label}: all"] = {
            "rows": len(reference.vectors), "mean_cosine_distance": mean_pairwise_cosine_distance(reference.vectors)
        }
    names = list(values)
    fig = Figure(figsize=(9, panel_height(len(names))))
    ax = fig.add_subplot(1, 1, 1)
    bars = [values[n]["mean_cosine_distance"] for n in names]
    colours = [REFERENCE_COLOUR if reference is not None and n.startswith(f"{reference.label}:") else RUN_COLOUR for n in names]
    ax.barh(np.arange(len(names)), [np.nan if b is None else b for b in bars], color=colours)
    ax.set_yticks(np.arange(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("mean pairwise cosine distance (1 - cosine similarity)")
    fig.tight_layout()
    caption = (
        "Mean of 1 - cos(a, b) over every pair of distinct instructions in a group, from their unit "
        "sentence embeddings (computed exactly from the sum of the vectors). Higher means the "
        "instructions are spread more widely in meaning."
    )
    return Plot("embedding_spread", "Embedding spread", caption, render(fig), {"groups": values})


def projection(run: Dataset, reference: Dataset | None, seed: int = 0) -> Plot | None:
    """The instruction embeddings projected to 2-D with PCA, coloured by category."""
    if run.vectors is None:
        return None
    with_reference = reference is not None and reference.vectors is not None
    stacked = np.concatenate([run.vectors, reference.vectors]) if with_reference else run.vectors
    coords, explained = pca_2d(stacked)
    run_xy, ref_xy = coords[: len(run.vectors)], coords[len(run.vectors) :]
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(run_xy), min(len(run_xy), MAX_POINTS), replace=False))
    labels = np.asarray(run.category, dtype=object)[run.vector_rows]
    colours = category_colours(run.categories())
    size = float(np.clip(4000 / max(len(shown), 1), 6, 30))  # fewer points, larger dots
    fig = Figure(figsize=(11, 7))
    ax = fig.add_subplot(1, 1, 1)
    for category in run.categories():
        pick = shown[labels[shown] == category]
        if len(pick):
            ax.scatter(run_xy[pick, 0], run_xy[pick, 1], s=size, color=colours[category], label=category, alpha=0.8)
    points = [[round(float(run_xy[i, 0]), 4), round(float(run_xy[i, 1]), 4), labels[i], "run"] for i in shown]
    if with_reference:
        ref_shown = np.sort(rng.choice(len(ref_xy), min(len(ref_xy), MAX_POINTS), replace=False))
        ax.scatter(ref_xy[ref_shown, 0], ref_xy[ref_shown, 1], s=16, marker="x", color="black", alpha=0.6, label=reference.label)
        points += [[round(float(ref_xy[i, 0]), 4), round(float(ref_xy[i, 1]), 4), reference.label, "reference"] for i in ref_shown]
    ax.set_xlabel(f"PC 1 ({explained[0]:.1%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.1%} of variance)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=1.5, frameon=False)
    fig.tight_layout()
    caption = (
        "Instruction embeddings projected onto their first two principal components (PCA with numpy: "
        "eigenvectors of the covariance matrix"
        + (", fitted on the run and the reference together so both share the axes" if with_reference else "")
        + f"). At most {MAX_POINTS} points per set are drawn (a seeded sample)."
    )
    data = {"method": "PCA (numpy eigendecomposition of the covariance matrix)", "explained_variance": explained, "points": points,
            "columns": ["pc1", "pc2", "category", "set"]}
    return Plot("projection", "Embedding projection (PCA)", caption, render(fig), data)


def _histogram_entry(values: np.ndarray, edges: np.ndarray, threshold: float) -> dict[str, Any]:
    values = values[~np.isnan(values)]
    hist, _ = np.histogram(values, bins=edges)
    quantiles = {f"p{q}": float(np.percentile(values, q)) for q in (10, 50, 90, 99)} if len(values) else {}
    return {"rows": len(values), "counts": hist.tolist(), "at_or_above_threshold": int((values >= threshold).sum()), **quantiles}


def neighbours(run: Dataset, reference: Dataset | None) -> Plot | None:
    """The distribution of each instruction's cosine similarity to its nearest neighbour (from the
    sets' neighbour scans)."""
    if run.vectors is None or run.scan is None:
        return None
    threshold = run.scan.threshold
    series = {f"{run.label}: nearest other row": (run.scan.nearest, RUN_COLOUR, "-")}
    if reference is not None and reference.vectors is not None and reference.scan is not None:
        series[f"{reference.label}: nearest other row"] = (reference.scan.nearest, REFERENCE_COLOUR, "-")
        series[f"{run.label}: nearest {reference.label} row"] = (
            nearest_similarity(run.vectors, reference.vectors), "#2ca02c", "--")
    low = min(0.0, *(float(np.nanmin(v)) for v, _, _ in series.values() if np.isfinite(v).any()))
    edges = np.linspace(np.floor(low * 50) / 50, 1.0, int(round((1.0 - np.floor(low * 50) / 50) * 50)) + 1)
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot(1, 1, 1)
    data: dict[str, Any] = {"threshold": threshold, "bin_edges": edges.tolist(), "series": {}}
    for name, (values, colour, style) in series.items():
        finite = values[np.isfinite(values)]
        if len(finite):
            weights = np.full(len(finite), 1 / len(finite)) if len(series) > 1 else None
            ax.hist(finite, bins=edges, weights=weights, histtype="step", linewidth=2, color=colour, linestyle=style, label=name)
        data["series"][name] = _histogram_entry(values, edges, threshold)
    ax.axvline(threshold, color="crimson", linestyle=":", label=f"novelty threshold {threshold:g}")
    ax.set_xlabel("cosine similarity to the nearest neighbour")
    ax.set_ylabel("share of rows" if len(series) > 1 else "rows")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    caption = (
        "For every instruction, the cosine similarity of its embedding to the most similar other "
        "instruction of the same set (exact search); a mass near 1 means near-duplicates. "
        "The dotted line is the novelty threshold."
        + (" The dashed line is each run row's similarity to its nearest reference row." if len(series) > 1 else "")
    )
    return Plot("nearest_neighbour", "Nearest-neighbour similarity", caption, render(fig), data)
