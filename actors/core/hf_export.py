"""The Hugging Face dataset folder: Parquet per category without embeddings, and a dataset card.

Layout (under the destination root, ``exports/hf/``)::

    README.md                                    the dataset card (YAML header + summary)
    data/<category>/train-00000-of-00001.parquet every kept row of that category
    figures/*.png, figures/index.html            the run report's plots and page, when ``report/`` exists

The card's ``configs`` give one config per category plus ``all`` (the default), so
``datasets.load_dataset(folder)`` reads every row and ``load_dataset(folder, "trivia")`` one
category. The folder is rewritten whole; the card is written last, so a folder without
``README.md`` is an interrupted export (run it again).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from instructflow.actors.core.exports import HF_FOLDER, read_part
from instructflow.actors.core.filters import RowFilter
from instructflow.actors.core.hf_card import render_card
from instructflow.actors.core.manifest import PartEntry
from instructflow.actors.core.runinfo import read_run_info
from instructflow.actors.core.schema import ROW_SCHEMA
from instructflow.actors.core.storage import Store

log = logging.getLogger(__name__)

DATA_FILE = "data/{category}/train-00000-of-00001.parquet"
REPORT_DIR = "report"  # where `instructflow report` leaves its page and figures in a run's root
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class CategoryStats:
    """Running sums for one category's rows (what the card shows)."""

    rows: int = 0
    instruction_chars: int = 0
    response_chars: int = 0
    scored: int = 0
    score_sum: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        self.instruction_chars += int(pc.sum(pc.utf8_length(table.column("instruction"))).as_py() or 0)
        self.response_chars += int(pc.sum(pc.utf8_length(table.column("response"))).as_py() or 0)
        scores = table.column("score")
        self.scored += table.num_rows - scores.null_count
        self.score_sum += float(pc.sum(scores).as_py() or 0.0)
        self.prompt_tokens += int(pc.sum(table.column("prompt_tokens")).as_py() or 0)
        self.completion_tokens += int(pc.sum(table.column("completion_tokens")).as_py() or 0)


@dataclass
class FolderStats:
    """What went into the folder: per-category sums, teacher models and sources by rows."""

    categories: dict[str, CategoryStats] = field(default_factory=dict)
    models: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)


def _columns(store: Store, entry: PartEntry) -> list[str]:
    """Every column but the embedding: the current schema's (`read_part` fills those an older part
    lacks) and, after them, the part's own extras (a merge's ``source``)."""
    names = pq.read_schema(store.path(entry.file), filesystem=store.filesystem).names
    current = [f.name for f in ROW_SCHEMA]
    return [n for n in [*current, *(n for n in names if n not in current)] if n != "embedding"]


class _CategoryFiles:
    """One open Parquet writer per category under the folder."""

    def __init__(self, dest: Store, folder: str) -> None:
        self.dest, self.folder = dest, folder
        self.writers: dict[str, pq.ParquetWriter] = {}

    def write(self, category: str, table: pa.Table) -> None:
        if category not in self.writers:
            if not _SAFE_NAME.match(category) or category == "all":
                raise ValueError(f"category {category!r} cannot name a dataset config (letters, digits, _ . -; not 'all')")
            rel = f"{self.folder}/{DATA_FILE.format(category=category)}"
            self.dest.makedirs(rel.rpartition("/")[0])
            self.writers[category] = pq.ParquetWriter(
                self.dest.path(rel), table.schema, filesystem=self.dest.filesystem, compression="zstd"
            )
        self.writers[category].write_table(table)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def _clear(dest: Store, folder: str) -> None:
    info = dest.filesystem.get_file_info(dest.path(folder))
    if info.type == pafs.FileType.Directory:
        dest.filesystem.delete_dir_contents(dest.path(folder))
    dest.makedirs(folder)


@dataclass
class ReportCopy:
    """What the card shows of the run's report (`instructflow report`), when one exists.

    Attributes:
        figures: (file in the folder, title, caption) of each copied plot.
        summary: (measure, value per column) rows of the report's summary table.
        columns: the summary's column names (the run, and a reference set when compared).
        page: the copied HTML page, relative to the folder, or None.
    """

    figures: list[tuple[str, str, str]] = field(default_factory=list)
    summary: list[tuple[str, list[str]]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    page: str | None = None


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{value:,}" if isinstance(value, int) else str(value)


def _copy_report(store: Store, dest: Store, folder: str) -> ReportCopy:
    """Copies the report's plots (and page) from ``<root>/report/`` into ``figures/``; reads titles,
    captions and the summary table from its ``figures.json`` when there is one."""
    copy = ReportCopy()
    names = store.listdir(REPORT_DIR)
    described: dict[str, tuple[str, str]] = {}
    if "figures.json" in names:
        try:
            document = json.loads(store.read(f"{REPORT_DIR}/figures.json"))
            described = {f["file"]: (f.get("title", ""), f.get("caption", "")) for f in document.get("figures", [])}
            for measure, values in (document.get("summary") or {}).items():
                copy.columns = copy.columns or list(values)
                copy.summary.append((measure, [_cell(values.get(c)) for c in copy.columns]))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s is unreadable; the card lists the report's images only", store.display(f"{REPORT_DIR}/figures.json"))
    copied = [n for n in names if n.lower().endswith((".png", ".svg")) or n == "index.html"]
    if copied:
        dest.makedirs(f"{folder}/figures")
    for name in copied:
        dest.write_atomic(f"{folder}/figures/{name}", store.read(f"{REPORT_DIR}/{name}"))
        if name == "index.html":
            copy.page = f"figures/{name}"
        else:
            title, caption = described.get(name, (name.rpartition(".")[0], ""))
            copy.figures.append((f"figures/{name}", title, caption))
    return copy


def write_hf_folder(
    store: Store,
    entries: Sequence[PartEntry],
    dest: Store,
    *,
    where: RowFilter | None = None,
    license: str = "other",
    folder: str = HF_FOLDER,
) -> str:
    """Writes the Hugging Face folder of `entries` (rows passing `where`) under `dest`; returns its
    location. Reads one part at a time, so memory stays at about one part.

    Raises:
        ValueError: a category name cannot be a config name.
        OSError: the run cannot be read or the folder cannot be written.
    """
    where = where or RowFilter()
    _clear(dest, folder)
    files = _CategoryFiles(dest, folder)
    stats = FolderStats()
    schema: pa.Schema | None = None
    try:
        for entry in entries:
            if not any(where.keeps_category(c) for c in entry.categories):
                continue
            table = where.apply(read_part(store, entry, _columns(store, entry)))
            schema = schema or table.schema
            table = table.cast(schema)  # every file of the folder has one schema
            for category in sorted(set(table.column("category").to_pylist())):
                rows = table.filter(pc.equal(table.column("category"), category))
                files.write(category, rows)
                stats.categories.setdefault(category, CategoryStats()).add(rows)
            stats.models.update(table.column("model").to_pylist())
            if "source" in table.column_names:
                stats.sources.update(table.column("source").to_pylist())
    finally:
        files.close()
    report = _copy_report(store, dest, folder)
    card = render_card(stats, read_run_info(store), schema, where=where, license=license, report=report)
    dest.write_atomic(f"{folder}/README.md", card.encode("utf-8"))
    return dest.display(folder)
