"""`write_report`: reads a run (and a reference set), measures, and writes the page, PNGs and JSON."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instructflow.report import figures, run_figures
from instructflow.report.data import Dataset, ReportError, RunFacts, read_reference, read_run
from instructflow.report.figures import Plot
from instructflow.report.measures import neighbour_scan
from instructflow.report.page import render_page

PAGE, FIGURES_JSON = "index.html", "figures.json"
Encoder = Callable[[list[str]], np.ndarray]


@dataclass
class Report:
    """What `write_report` wrote.

    Attributes:
        directory: the report's folder.
        page: the self-contained HTML page.
        figures_json: the numbers behind every plot.
        images: one PNG per plot.
        notes: what the page says is missing or partial.
    """

    directory: Path
    page: Path
    figures_json: Path
    images: list[Path]
    notes: list[str]


def default_directory(root: str) -> Path:
    """Where a run's report goes unless told: ``<root>/report`` for a local run.

    Raises:
        ReportError: `root` is a URI (s3://...): the report is written locally, so name a folder.
    """
    if "://" in root and not root.startswith("file://"):
        raise ReportError(f"{root} is not a local directory; name a local folder for the report with --to")
    return Path(root.removeprefix("file://")) / "report"


def embed(dataset: Dataset, model: str, encoder: Encoder | None = None) -> None:
    """Embeds a reference set's instructions with the run's novelty model, in place.

    When the model cannot be loaded the set keeps no vectors and `vectors_note` says why; the
    page then shows its other measures only.
    """
    if dataset.vectors is not None:
        return
    if encoder is None:
        try:
            from instructflow.actors.core.embedder import Embedder, model_path

            model_path(model)  # an unknown or missing model fails here, before torch is imported
            encoder = Embedder(model).encode
        except KeyError:
            dataset.vectors_note = f"the embedding model {model!r} is not one instructflow ships"
            return
        except (ImportError, RuntimeError, OSError, ValueError) as exc:
            dataset.vectors_note = f"the embedding model {model!r} could not be loaded ({exc})"
            return
    dataset.vectors = np.asarray(encoder(dataset.instruction), dtype=np.float32)
    dataset.vector_rows = np.arange(len(dataset))


def write_report(
    root: str,
    directory: str | Path | None = None,
    compare: str | None = None,
    *,
    embed_compare: bool = True,
    threshold: float | None = None,
    top_clusters: int = 10,
    encoder: Encoder | None = None,
) -> Report:
    """Writes the report of a finished run.

    Args:
        root: the run's output directory (local path or filesystem URI).
        directory: where to write; default ``<root>/report``.
        compare: a reference set to measure side by side (JSONL file or another output directory).
        embed_compare: embed the reference set with the run's novelty model; when False (or the
            model is unavailable) its embedding measures are left out and the page says so.
        threshold: cosine similarity for near-duplicate clusters; default the run's novelty threshold.
        top_clusters: how many of the largest clusters to show.
        encoder: texts -> unit vectors, instead of loading the novelty model (tests, custom models).

    Raises:
        ReportError: an input cannot be read or used.
    """
    out = Path(directory) if directory is not None else default_directory(root)
    run, facts = read_run(root)
    threshold = facts.threshold if threshold is None else threshold
    notes: list[str] = []
    reference = read_reference(compare) if compare else None
    if reference is not None:
        if embed_compare:
            embed(reference, facts.embedding_model, encoder)
        else:
            reference.vectors_note = "not embedded (--no-embed-compare)"
        _check_dimensions(run, reference)
    if run.vectors is None:
        notes.append(f"{run.label}: {run.vectors_note}; the embedding plots and duplicate clusters are left out.")
    if reference is not None and reference.vectors is None:
        notes.append(f"{reference.label}: no embeddings, {reference.vectors_note}; its embedding measures are left out.")
    for dataset in (run, reference):
        if dataset is not None and dataset.vectors is not None:
            dataset.scan = neighbour_scan(dataset.vectors, threshold)
    plots, summary = _plots(run, facts, reference, threshold, top_clusters, notes)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for plot in plots:
        images.append(out / f"{plot.id}.png")
        images[-1].write_bytes(plot.png)
    columns = [run.label] + ([reference.label] if reference is not None else [])
    document = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": {"source": run.source, "run_id": facts.run_id, "rows": len(run)},
        "reference": None if reference is None else {"source": reference.source, "rows": len(reference)},
        "settings": {
            "near_duplicate_threshold": threshold,
            "embedding_model": facts.embedding_model,
            "projection": "PCA (numpy eigendecomposition of the covariance matrix)",
            "distinct_n_tokens": "lower-cased runs of word characters and single punctuation marks",
            "length_unit": "whitespace-separated words",
        },
        "summary": {label: dict(zip(columns, values, strict=True)) for label, values in summary},
        "notes": notes,
        "figures": [{"id": p.id, "title": p.title, "file": f"{p.id}.png", "caption": p.caption, "data": p.data} for p in plots],
    }
    (out / FIGURES_JSON).write_text(json.dumps(_plain(document), indent=1, ensure_ascii=False), encoding="utf-8")
    subtitle = f"{run.source} · {len(run)} rows · generated {document['generated_at']}"
    if reference is not None:
        subtitle += f" · compared with {reference.source} ({len(reference)} rows)"
    html = render_page(
        title=f"instructflow report: {run.label}", subtitle=subtitle, plots=plots,
        summary_columns=columns, summary_rows=[(label, [_text(v) for v in values]) for label, values in summary],
        notes=notes,
    )
    (out / PAGE).write_text(html, encoding="utf-8")
    return Report(out, out / PAGE, out / FIGURES_JSON, images, notes)


def _check_dimensions(run: Dataset, reference: Dataset) -> None:
    if run.vectors is None or reference.vectors is None or run.vectors.shape[1] == reference.vectors.shape[1]:
        return
    reference.vectors_note = (
        f"its embeddings have {reference.vectors.shape[1]} dimensions and the run's {run.vectors.shape[1]}, "
        "so they come from different models"
    )
    reference.vectors = reference.vector_rows = None


def _plots(
    run: Dataset, facts: RunFacts, reference: Dataset | None, threshold: float, top: int, notes: list[str]
) -> tuple[list[Plot], list[tuple[str, list[Any]]]]:
    """Every plot, in page order, and the summary table's rows."""
    cost_plot, cost_note = run_figures.tokens_and_cost(run, facts)
    clusters_plot, clusters = run_figures.duplicate_clusters(run, threshold, top)
    plots: dict[str, Plot | None] = {
        "rows": figures.rows_per_category(run, facts.targets, reference),
        "lengths": figures.lengths(run, reference),
        "distinct": figures.distinct(run, reference),
        "spread": figures.spread(run, reference),
        "projection": figures.projection(run, reference),
        "neighbours": figures.neighbours(run, reference),
        "judge": run_figures.judge_scores(facts),
        "cost": cost_plot,
        "rejects": run_figures.rejects(facts),
        "clusters": clusters_plot,
    }
    if plots["judge"] is None:
        notes.append("No committed row has a judge score (the LLM judge was off): no judge-score plot.")
    if cost_note:
        notes.append(cost_note)
    if plots["rejects"] is None:
        notes.append("No rejects log (rejects.jsonl): nothing was rejected, or writer.keep_rejects was off.")
    if clusters_plot is None and run.vectors is not None:
        notes.append(f"No two committed instructions have cosine similarity at or above {threshold:g}: no near-duplicate clusters.")
    return [p for p in plots.values() if p is not None], _summary(run, facts, reference, plots, clusters)


def _summary(
    run: Dataset, facts: RunFacts, reference: Dataset | None, plots: dict[str, Plot | None], clusters: dict[str, Any]
) -> list[tuple[str, list[Any]]]:
    sets = [run] + ([reference] if reference is not None else [])
    lengths = plots["lengths"].data  # type: ignore[union-attr]
    distinct = plots["distinct"].data["groups"]  # type: ignore[union-attr]
    spread = plots["spread"].data["groups"] if plots["spread"] else {}
    nearest = plots["neighbours"].data["series"] if plots["neighbours"] else {}
    cost = plots["cost"].data  # type: ignore[union-attr]
    judge = plots["judge"].data if plots["judge"] else {}

    def each(value: Callable[[Dataset], Any]) -> list[Any]:
        return [value(ds) for ds in sets]

    def run_only(value: Any) -> list[Any]:
        return [value] + [None] * (len(sets) - 1)

    rows: list[tuple[str, list[Any]]] = [
        ("rows", each(len)),
        ("categories", each(lambda ds: len(ds.categories()))),
        ("rows with an embedding", each(lambda ds: 0 if ds.vectors is None else len(ds.vectors))),
        ("instruction words, median", each(lambda ds: lengths["instruction"][ds.label]["p50"])),
        ("response words, median", each(lambda ds: lengths["response"][ds.label]["p50"])),
    ]
    rows += [(f"distinct-{n} (all responses)", each(lambda ds, n=n: distinct[f"{ds.label}: all"][f"distinct_{n}"])) for n in (1, 2, 3)]
    rows += [
        ("mean pairwise cosine distance", each(lambda ds: spread.get(f"{ds.label}: all", {}).get("mean_cosine_distance"))),
        ("nearest-neighbour similarity, median", each(lambda ds: nearest.get(f"{ds.label}: nearest other row", {}).get("p50"))),
        (f"rows with a neighbour at or above {clusters['threshold']:g}",
         each(lambda ds: nearest.get(f"{ds.label}: nearest other row", {}).get("at_or_above_threshold"))),
        ("near-duplicate clusters (rows in them)", run_only(f"{clusters['clusters']} ({clusters['rows_in_clusters']})" if run.vectors is not None else None)),
        ("mean judge score", run_only(judge.get("mean"))),
        ("tokens (prompt + completion)", run_only(cost["total_prompt_tokens"] + cost["total_completion_tokens"])),
        ("cost (USD)", run_only(cost["total_cost_usd"])),
        ("rejected candidates", run_only(None if facts.rejects is None else sum(facts.rejects.values()))),
        ("dead letters", run_only(None if facts.dead_letters is None else sum(facts.dead_letters.values()))),
    ]
    return rows


def _text(value: Any) -> str:
    """A summary cell: integers with separators, floats to 3-4 significant digits, '—' for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _plain(value: Any) -> Any:
    """`value` with numpy scalars made plain and NaN/inf made null, for strict JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
