"""The plots only a run has: judge scores, tokens and cost, rejects, near-duplicate clusters."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

from instructflow.report.data import Dataset, RunFacts
from instructflow.report.figures import (
    RUN_COLOUR,
    Plot,
    category_colours,
    groups,
    panel_height,
    render,
)
from instructflow.report.measures import clusters, row_costs

SAMPLES_PER_CLUSTER = 4  # instructions shown per cluster on the page
_SAMPLE_CHARS = 160


def judge_scores(facts: RunFacts) -> Plot | None:
    """Histogram of the LLM judge's scores; None when no row has one."""
    scores = facts.score[np.isfinite(facts.score)]
    if len(scores) == 0:
        return None
    edges = np.arange(0.0, 10.5, 0.5)
    hist, _ = np.histogram(scores, bins=edges)
    fig = Figure(figsize=(9, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(scores, bins=edges, color=RUN_COLOUR)
    if facts.judge_threshold is not None:
        ax.axvline(facts.judge_threshold, color="crimson", linestyle=":", label=f"acceptance threshold {facts.judge_threshold:g}")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("LLM judge score (0-10)")
    ax.set_ylabel("rows")
    fig.tight_layout()
    data = {"bin_edges": edges.tolist(), "counts": hist.tolist(), "rows_scored": len(scores),
            "rows": len(facts.score), "mean": float(scores.mean()), "threshold": facts.judge_threshold}
    caption = (
        f"Scores the LLM judge gave to the {len(scores)} committed rows it scored (of {len(facts.score)}). "
        "Rejected rows are not here: they scored below the threshold."
    )
    return Plot("judge_scores", "Judge scores", caption, render(fig), data)


def tokens_and_cost(run: Dataset, facts: RunFacts) -> tuple[Plot, str]:
    """Mean prompt and completion tokens per row by category, and the distribution of cost per row.

    Returns the plot and a note for the page (empty, or why cost is missing or partial).
    """
    cost, unpriced = row_costs(facts.model, facts.prompt_tokens, facts.completion_tokens, facts.prices)
    by_category: dict[str, dict[str, Any]] = {}
    for category, index in groups(run).items():
        priced = cost[index][np.isfinite(cost[index])]
        by_category[category] = {
            "rows": len(index),
            "mean_prompt_tokens": float(facts.prompt_tokens[index].mean()),
            "mean_completion_tokens": float(facts.completion_tokens[index].mean()),
            "mean_cost_usd": float(priced.mean()) if len(priced) else None,
        }
    names = list(by_category)
    fig = Figure(figsize=(12, panel_height(len(names))))
    ax = fig.add_subplot(1, 2, 1)
    y = np.arange(len(names))
    prompt = np.array([by_category[c]["mean_prompt_tokens"] for c in names])
    completion = np.array([by_category[c]["mean_completion_tokens"] for c in names])
    ax.barh(y, prompt, color="#aec7e8", label="prompt")
    ax.barh(y, completion, left=prompt, color=RUN_COLOUR, label="completion")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("mean tokens per committed row")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False, fontsize=8)
    right = fig.add_subplot(1, 2, 2)
    priced = cost[np.isfinite(cost)]
    if len(priced):
        right.hist(priced, bins=30, color=RUN_COLOUR)
        right.xaxis.set_major_locator(MaxNLocator(5))
        right.xaxis.set_major_formatter(StrMethodFormatter("{x:.2g}"))
        right.set_xlabel("cost per row (USD)")
    else:
        right.hist(facts.prompt_tokens + facts.completion_tokens, bins=30, color=RUN_COLOUR)
        right.set_xlabel("tokens per row (prompt + completion)")
    right.set_ylabel("rows")
    fig.tight_layout()
    note = ""
    if not facts.prices:
        note = "No prices in teacher.budget.prices: cost per row is not shown, only tokens."
    elif unpriced:
        note = f"{unpriced} row(s) came from a model without a price in teacher.budget.prices; their cost is left out."
    data = {
        "categories": by_category,
        "total_prompt_tokens": int(facts.prompt_tokens.sum()),
        "total_completion_tokens": int(facts.completion_tokens.sum()),
        "total_cost_usd": float(priced.sum()) if len(priced) else None,
        "unpriced_rows": unpriced,
        "cost_histogram": np.histogram(priced, bins=30)[0].tolist() if len(priced) else [],
    }
    caption = (
        "Left: mean prompt and completion tokens of the teacher calls that made each committed row, by "
        "category. Right: " + ("cost per row from those tokens and teacher.budget.prices." if len(priced)
                               else "tokens per row (no prices configured).")
        + " Tokens spent on candidates that were later rejected are not in the rows and not counted here."
    )
    return Plot("tokens_cost", "Tokens and cost per row", caption, render(fig), data), note


def rejects(facts: RunFacts) -> Plot | None:
    """Rejected candidates by reason, stacked by category; None without a rejects log."""
    if not facts.rejects:
        return None
    by_reason: dict[str, Counter[str]] = {}
    for (reason, category), n in facts.rejects.items():
        by_reason.setdefault(reason, Counter())[category] += n
    reasons = sorted(by_reason, key=lambda r: -sum(by_reason[r].values()))
    categories = sorted({c for _, c in facts.rejects})
    colours = category_colours(categories)
    fig = Figure(figsize=(10, panel_height(len(reasons))))
    ax = fig.add_subplot(1, 1, 1)
    left = np.zeros(len(reasons))
    for category in categories:
        widths = np.array([by_reason[r][category] for r in reasons], dtype=float)
        ax.barh(np.arange(len(reasons)), widths, left=left, color=colours[category], label=category)
        left += widths
    ax.set_yticks(np.arange(len(reasons)), reasons)
    ax.invert_yaxis()
    ax.set_xlabel("rejected candidates")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    data = {"by_reason": {r: dict(by_reason[r]) for r in reasons}, "total": int(sum(facts.rejects.values()))}
    caption = "Candidates the pipeline rejected (rejects.jsonl), by reason and coloured by category."
    return Plot("rejects", "Rejects by reason", caption, render(fig), data)


def duplicate_clusters(run: Dataset, threshold: float, top: int = 10) -> tuple[Plot | None, dict[str, Any]]:
    """The largest clusters of near-duplicate instructions among the committed rows.

    Returns the plot (None when there is no cluster) and the summary numbers either way.
    """
    summary: dict[str, Any] = {"threshold": threshold, "clusters": 0, "rows_in_clusters": 0}
    if run.vectors is None or run.vector_rows is None or run.scan is None:
        return None, summary
    found = clusters(run.scan)
    summary.update(clusters=len(found), rows_in_clusters=int(sum(len(c) for c in found)))
    if not found:
        return None, summary
    shown = []
    for number, members in enumerate(found[:top], 1):
        rows = run.vector_rows[members]
        mix = Counter(run.category[r] for r in rows)
        shown.append({
            "cluster": number,
            "size": len(rows),
            "categories": ", ".join(f"{c} {n}" for c, n in mix.most_common()),
            "instructions": [_clip(run.instruction[r]) for r in rows[:SAMPLES_PER_CLUSTER]],
        })
    fig = Figure(figsize=(9, panel_height(len(shown))))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(np.arange(len(shown)), [c["size"] for c in shown], color=RUN_COLOUR)
    ax.set_yticks(np.arange(len(shown)), [f"#{c['cluster']} ({c['categories'][:40]})" for c in shown])
    ax.invert_yaxis()
    ax.set_xlabel("rows in the cluster")
    fig.tight_layout()
    caption = (
        f"Clusters of instructions joined by pairs whose embeddings have cosine similarity at or above "
        f"{threshold:g} (connected components: a chain of close pairs is one cluster). "
        f"{len(found)} cluster(s) hold {summary['rows_in_clusters']} rows; the {len(shown)} largest are shown."
    )
    table = [{**c, "instructions": " | ".join(c["instructions"])} for c in shown]
    plot = Plot("duplicate_clusters", "Largest near-duplicate clusters", caption, render(fig),
                {**summary, "largest": shown}, table)
    return plot, summary


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SAMPLE_CHARS else text[: _SAMPLE_CHARS - 1] + "…"
