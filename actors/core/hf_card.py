"""The dataset card (``README.md``) of the Hugging Face folder: YAML header for the Hub and
`datasets`, then the dataset's main figures in words and tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import yaml

from instructflow.actors.core.filters import RowFilter
from instructflow.actors.core.runinfo import RunInfo

if TYPE_CHECKING:
    from instructflow.actors.core.hf_export import CategoryStats, FolderStats, ReportCopy

_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]


def size_category(rows: int) -> str:
    """The Hub's size bucket for `rows` rows."""
    return next((label for limit, label in _SIZES if rows < limit), "10M<n<100M")


def card_header(categories: list[str], rows: int, license: str, name: str) -> dict:
    """The YAML header: license, task, size and one config per category plus ``all`` (default)."""
    configs: list[dict] = [
        {"config_name": "all", "default": True, "data_files": [{"split": "train", "path": "data/*/*.parquet"}]}
    ]
    configs += [
        {"config_name": c, "data_files": [{"split": "train", "path": f"data/{c}/*.parquet"}]} for c in categories
    ]
    return {
        "license": license,
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "instruction-tuning", "instructflow"],
        "pretty_name": name,
        "size_categories": [size_category(rows)],
        "configs": configs,
    }


def _mean(total: float, n: int) -> str:
    return f"{total / n:,.1f}" if n else "–"


def _category_table(stats: dict[str, CategoryStats]) -> list[str]:
    lines = [
        "| category | rows | mean instruction chars | mean response chars | mean judge score | scored rows |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in sorted(stats.items()):
        lines.append(
            f"| `{name}` | {s.rows:,} | {_mean(s.instruction_chars, s.rows)} | {_mean(s.response_chars, s.rows)} "
            f"| {_mean(s.score_sum, s.scored)} | {s.scored:,} |"
        )
    return lines


def _columns_table(schema: pa.Schema | None) -> list[str]:
    if schema is None:
        return []
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for f in schema:
        doc = (f.metadata or {}).get(b"doc", b"").decode("utf-8").replace("|", "\\|")
        lines.append(f"| `{f.name}` | `{f.type}` | {doc} |")
    return ["## Columns", "", *lines, ""]


def _provenance(info: RunInfo, stats: FolderStats) -> list[str]:
    lines = ["## How it was made", ""]
    if info.merge is not None:
        lines += [
            f"A merge of {len(info.merge.get('inputs', []))} instructflow datasets (`instructflow merge`, merge id "
            f"`{info.run_id}`): exact duplicates, then instructions whose embedding reached cosine similarity "
            f"{info.merge.get('threshold')} to a row kept from an earlier input, were dropped.",
            "",
            "| source | run id | teacher | embedding model |",
            "|---|---|---|---|",
        ]
        for i in info.merge.get("inputs", []):
            teachers = ", ".join(i.get("teachers", [])) or "–"
            lines.append(f"| `{i['label']}` | `{i.get('run_id') or '–'}` | {teachers} | {i.get('model') or '–'} |")
        lines.append("")
        if stats.sources:
            lines += ["Rows per source: " + ", ".join(f"`{k}` {v:,}" for k, v in sorted(stats.sources.items())), ""]
        return lines
    if info.run_id:
        lines += [f"Run id `{info.run_id}` (the hash of the effective config below).", ""]
    if info.config_text:
        lines += ["<details><summary>config.effective.yaml</summary>", "", "```yaml", info.config_text.rstrip(), "```", "", "</details>", ""]
    return lines if len(lines) > 2 else []


def _report_section(report: ReportCopy) -> list[str]:
    if not (report.figures or report.summary or report.page):
        return []
    lines = ["## Report", "", "From `instructflow report` on the run (its numbers cover every committed row, before any export filter)."]
    if report.page:
        lines[-1] += f" The whole page: [{report.page}]({report.page})."
    lines.append("")
    if report.summary:
        lines += ["| measure | " + " | ".join(report.columns) + " |", "|---|" + "---:|" * len(report.columns)]
        lines += [f"| {measure} | " + " | ".join(values) + " |" for measure, values in report.summary]
        lines.append("")
    for file, title, caption in report.figures:
        lines += [f"**{title}**" if title else "", "", f"![{title}]({file})", ""]
        if caption:
            lines += [caption, ""]
    return lines


def render_card(
    stats: FolderStats,
    info: RunInfo,
    schema: pa.Schema | None,
    *,
    where: RowFilter,
    license: str,
    report: ReportCopy,
) -> str:
    """The whole ``README.md`` text."""
    categories = sorted(stats.categories)
    rows = sum(s.rows for s in stats.categories.values())
    scored = sum(s.scored for s in stats.categories.values())
    score_sum = sum(s.score_sum for s in stats.categories.values())
    name = f"instructflow dataset {info.run_id}" if info.run_id else "instructflow dataset"
    header = yaml.safe_dump(card_header(categories, rows, license, name), sort_keys=False, allow_unicode=True)
    teachers = ", ".join(f"`{m}` ({n:,} rows)" for m, n in stats.models.most_common()) or "–"
    configured = ", ".join(f"`{m}`" for m in info.teacher_models) or "–"
    body = [
        f"# {name}",
        "",
        "Synthetic instruction/response pairs (and, in the `messages` column, whole conversations) "
        "written by a teacher model through instructflow's "
        "generators (self-instruct / airoboros style), deduplicated by sentence embeddings and checked "
        "by rule and LLM judges.",
        "",
        "| | |",
        "|---|---|",
        f"| rows | {rows:,} |",
        f"| categories | {len(categories)} |",
        f"| teacher model(s) | {teachers} |",
        f"| configured teacher | {configured} |",
        f"| mean judge score | {_mean(score_sum, scored)} ({scored:,} scored rows) |",
        f"| rows exported | {where.describe()} |",
        f"| embedding model (for deduplication) | {info.embedding_model or '–'} |",
        f"| novelty threshold | {info.threshold if info.threshold is not None else '–'} |",
        "",
        "## Rows per category",
        "",
        *_category_table(stats.categories),
        "",
        "Lengths are in characters; judge scores are 0-10 (null where the LLM judge was off).",
        "",
    ]
    body += _report_section(report)
    body += _provenance(info, stats)
    body += _columns_table(schema)
    body += [
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'rows = load_dataset("path/to/this/folder", split="train")  # every category',
        *([f'{categories[0]} = load_dataset("path/to/this/folder", "{categories[0]}", split="train")'] if categories else []),
        "```",
        "",
    ]
    if license == "other":
        body += [
            "## License",
            "",
            "No license was chosen when this folder was exported (`license: other`). The teacher "
            "provider's terms may limit how generated text can be used; set one with "
            "`instructflow export ... --format hf --license <id>`.",
            "",
        ]
    return f"---\n{header}---\n\n" + "\n".join(body)
