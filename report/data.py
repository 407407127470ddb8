"""What a report reads: a finished run's committed rows and side files, or a reference set to compare.

A run is read the way `instructflow export` reads it: only the parts its manifest lists, in
manifest order, then row order. A reference set is JSON Lines in one of the common layouts (see
`read_reference`) or another instructflow output directory.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from instructflow.actors.core.exports import read_part
from instructflow.actors.core.manifest import MANIFEST, read_manifest
from instructflow.actors.core.storage import OutputError, Store, open_store
from instructflow.config.schema import LlmJudge, Novelty, Price
from instructflow.report.measures import NeighbourScan

_COLUMNS = [
    "category", "instruction", "response", "model", "prompt_tokens", "completion_tokens", "score", "embedding",
]


class ReportError(ValueError):
    """An input the report cannot use; the message names the file (and line) and what is wrong."""


@dataclass
class Dataset:
    """Rows to measure: the run's committed rows, or a reference set.

    Attributes:
        label: how the page names it (``run 1b11459afdad``, ``seed_tasks.jsonl``).
        source: where it was read from.
        category: category of each row.
        instruction: the user turn of each row (a Self-Instruct/Alpaca ``input`` appended to it).
        response: the answer of each row.
        vectors: unit sentence embeddings of the instructions (m x d float32), or None.
        vector_rows: the row index of each vector (rows without an embedding have none).
        vectors_note: why there are no vectors, when there are none.
        scan: nearest neighbours and near-duplicate pairs of the vectors, once computed.
    """

    label: str
    source: str
    category: list[str]
    instruction: list[str]
    response: list[str]
    vectors: np.ndarray | None = None
    vector_rows: np.ndarray | None = None
    vectors_note: str = ""
    scan: NeighbourScan | None = None

    def __len__(self) -> int:
        return len(self.category)

    def categories(self) -> list[str]:
        """Distinct categories, in order of first appearance."""
        return list(dict.fromkeys(self.category))


@dataclass
class RunFacts:
    """What a run's output directory says besides its rows.

    Attributes:
        run_id: from ``run.json`` (or the manifest), "" when neither says.
        targets: rows wanted per category (``run.json``).
        threshold: the novelty threshold the run used (``config.effective.yaml``; schema default).
        embedding_model: the novelty model (same sources).
        judge_threshold: the LLM judge's acceptance score, or None when the judge was off.
        prices: USD per 1k tokens by model name (``teacher.budget.prices``).
        model: the teacher model of each row.
        prompt_tokens: prompt tokens of each row.
        completion_tokens: completion tokens of each row.
        score: LLM judge score of each row (NaN where null).
        rejects: rejected candidates by (reason, category); None when the run kept no rejects log.
        dead_letters: requests that failed for good, by reason; None when there is no such log.
    """

    run_id: str = ""
    targets: dict[str, int] = field(default_factory=dict)
    threshold: float = Novelty().threshold
    embedding_model: str = Novelty().model
    judge_threshold: float | None = None
    prices: dict[str, Price] = field(default_factory=dict)
    model: list[str] = field(default_factory=list)
    prompt_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    completion_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    rejects: Counter[tuple[str, str]] | None = None
    dead_letters: Counter[str] | None = None


def read_run(root: str) -> tuple[Dataset, RunFacts]:
    """Reads a finished run's committed rows, embeddings and side files.

    Args:
        root: the run's output directory (local path or filesystem URI).

    Raises:
        ReportError: `root` holds no manifest or no committed rows, or a file cannot be read.
    """
    store = open_store(root)
    try:
        if store.size(MANIFEST) is None:
            raise ReportError(f"{store.display(MANIFEST)}: not found; is {root} an instructflow output directory?")
        entries = read_manifest(store).entries
        if not entries:
            raise ReportError(f"{store.display(MANIFEST)}: lists no committed parts; the run has no rows yet")
        table = pa.concat_tables([read_part(store, e, _COLUMNS) for e in entries])
        facts = _facts(store, entries[0].run_id)
    except (OSError, OutputError) as exc:
        raise ReportError(f"cannot read {store.display()}: {exc}") from exc
    facts.model = table.column("model").to_pylist()
    facts.prompt_tokens = table.column("prompt_tokens").to_numpy(zero_copy_only=False).astype(np.int64)
    facts.completion_tokens = table.column("completion_tokens").to_numpy(zero_copy_only=False).astype(np.int64)
    facts.score = table.column("score").cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    vectors, rows = _vectors(table.column("embedding"))
    dataset = Dataset(
        label=f"run {facts.run_id}" if facts.run_id else "run",
        source=store.display(),
        category=table.column("category").to_pylist(),
        instruction=table.column("instruction").to_pylist(),
        response=table.column("response").to_pylist(),
        vectors=vectors,
        vector_rows=rows,
        vectors_note="" if vectors is not None else "no row has a stored embedding",
    )
    return dataset, facts


def _vectors(column: pa.ChunkedArray) -> tuple[np.ndarray | None, np.ndarray | None]:
    column = column.combine_chunks()
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return None, None
    present = column.filter(pa.array(valid))
    dims = pc.unique(pc.list_value_length(present)).to_pylist()
    if len(dims) != 1:
        raise ReportError(f"embeddings of different sizes {dims} in one run")
    flat = present.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(rows), dims[0]), rows


def _facts(store: Store, manifest_run_id: str) -> RunFacts:
    facts = RunFacts(run_id=manifest_run_id)
    run = _json(store, "run.json")
    if run:
        facts.run_id = str(run.get("run_id") or facts.run_id)
        facts.targets = {str(k): int(v) for k, v in (run.get("targets") or {}).items()}
    config = yaml.safe_load(store.read("config.effective.yaml")) if store.size("config.effective.yaml") else {}
    novelty = (config or {}).get("novelty") or {}
    facts.threshold = float(novelty.get("threshold", facts.threshold))
    facts.embedding_model = str(novelty.get("model", facts.embedding_model))
    judge = ((config or {}).get("judge") or {}).get("llm") or {}
    if judge.get("enabled"):
        facts.judge_threshold = float(judge.get("threshold", LlmJudge().threshold))
    prices = (((config or {}).get("teacher") or {}).get("budget") or {}).get("prices") or {}
    facts.prices = {str(name): Price.model_validate(p) for name, p in prices.items()}
    rejects = _records(store, "rejects")
    if rejects is not None:
        facts.rejects = Counter((str(r.get("reason") or "unknown"), str(r.get("category") or "?")) for r in rejects)
    dead = _records(store, "dead_letters")
    if dead is not None:
        facts.dead_letters = Counter(str(r.get("reason") or "unknown") for r in dead)
    return facts


def _json(store: Store, rel: str) -> dict[str, Any] | None:
    if not store.size(rel):
        return None
    try:
        return json.loads(store.read(rel))
    except ValueError as exc:
        raise ReportError(f"{store.display(rel)}: not valid JSON ({exc})") from None


def _records(store: Store, name: str) -> list[dict[str, Any]] | None:
    """The records of a side log: ``<name>.jsonl`` on a disk, ``<name>/*.jsonl`` on an object store.
    A torn last line (a crash mid-append) is skipped; None when neither exists."""
    if store.size(f"{name}.jsonl") is not None:
        blobs = [store.read(f"{name}.jsonl")]
    else:
        files = [f for f in store.listdir(name) if f.endswith(".jsonl")]
        if not files:
            return None
        blobs = [store.read(f"{name}/{f}") for f in files]
    records = []
    for blob in blobs:
        for line in blob.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # these logs carry no durability promise (docs/output.md)
    return records


# ------------------------------------------------------------------------------------ reference sets

_USER_KEYS = ("instruction", "prompt", "question", "query")
_ANSWER_KEYS = ("response", "output", "answer", "completion")


def read_reference(path: str) -> Dataset:
    """Reads a reference set to compare with.

    Accepted layouts, per JSON line:

    - Self-Instruct seed tasks: ``instruction`` and ``instances`` (a list of ``{input, output}``);
      the first instance's input is appended to the instruction and its output is the response;
    - airoboros / instructflow ``instructions.jsonl``: ``instruction``, ``response``, ``category``;
    - Alpaca: ``instruction``, ``input``, ``output``;
    - ShareGPT ``conversations`` or OpenAI ``messages``: the first user turn and the first answer;
    - any object with one of the keys instruction/prompt/question/query and one of
      response/output/answer/completion.

    Rows take their ``category`` field when they have one, else the file's name. `path` may also be
    another instructflow output directory (its rows and stored embeddings are read).

    Raises:
        ReportError: the file cannot be read, a line is not JSON, or a line has no usable fields.
    """
    if "://" in path or Path(path, MANIFEST).is_file():
        dataset, _ = read_run(path)
        dataset.label = f"reference {dataset.label}"
        return dataset
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read the reference set ({exc})") from None
    dataset = Dataset(label=file.name, source=str(file), category=[], instruction=[], response=[])
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ReportError(f"{path}:{number}: not a JSON object ({exc})") from None
        pair = _pair(record) if isinstance(record, dict) else None
        if pair is None:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ReportError(
                f"{path}:{number}: no instruction/response fields found (keys: {keys}); see "
                "docs/report.md for the layouts a reference set may use"
            )
        dataset.instruction.append(pair[0])
        dataset.response.append(pair[1])
        dataset.category.append(str(record.get("category") or file.stem))
    if not dataset.category:
        raise ReportError(f"{path}: holds no rows")
    return dataset


def _pair(record: dict[str, Any]) -> tuple[str, str] | None:
    """(instruction, response) of one reference record, or None when it has neither."""
    turns = record.get("conversations") or record.get("messages")
    if isinstance(turns, list):
        user = [t for t in turns if isinstance(t, dict) and (t.get("from") or t.get("role")) in ("human", "user")]
        answer = [t for t in turns if isinstance(t, dict) and (t.get("from") or t.get("role")) in ("gpt", "assistant")]
        if user and answer:
            return str(user[0].get("value", user[0].get("content", ""))), str(answer[0].get("value", answer[0].get("content", "")))
    instances = record.get("instances")
    if isinstance(instances, list) and instances and isinstance(record.get("instruction"), str):
        first = instances[0] if isinstance(instances[0], dict) else {}
        return _join(record["instruction"], first.get("input")), str(first.get("output") or "")
    user = next((record[k] for k in _USER_KEYS if isinstance(record.get(k), str)), None)
    answer = next((record[k] for k in _ANSWER_KEYS if isinstance(record.get(k), str)), None)
    if user is None or answer is None:
        return None
    return _join(user, record.get("input")), answer


def _join(instruction: str, context: Any) -> str:
    """An instruction with its separate context appended, as instructflow rows carry it inline."""
    return f"{instruction}\n\n{context}" if isinstance(context, str) and context.strip() else instruction
