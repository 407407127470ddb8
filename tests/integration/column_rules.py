"""Every rule docs/output.md states about a column (the text is `COLUMN_DOCS`), checked on the rows
of a real run. One rule per column: `RULES` must cover every documented column."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from instructflow.actors.core.schema import COLUMN_DOCS
from instructflow.config import Config
from instructflow.instructors.record import Candidate, conversation, is_multi_turn, row_id
from instructflow.instructors.registry import get_instructor
from instructflow.instructors.render import PromptTemplate, load_template
from instructflow.instructors.teacher.topics import read_topics

_DIGEST = re.compile(r"^[0-9a-f]{12}$")


@dataclass
class Run:
    """What the rules need to know about the run that wrote the rows."""

    config: Config
    started: float  # run.json's started_at: before any row of the run was created
    finished: float
    instructors: dict[str, Any] = field(default_factory=dict)
    judge_digest: str | None = None
    conversation_judge_digest: str | None = None
    topics: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, config: Config, out: Path, finished: float) -> Run:
        started = json.loads((out / "run.json").read_text())["started_at"]
        run = cls(config, started, finished)
        run.instructors = {n: get_instructor(n)(p, prompts_dir=config.prompts_path) for n, p in config.categories.items()}
        llm = config.judge.llm
        if llm.enabled:
            declared = frozenset({"category", "instruction", "response"})
            run.judge_digest = load_template(llm.template, declared, override=config.prompts_path).digest
            spoken = frozenset({"category", "system", "turns"})
            run.conversation_judge_digest = load_template(llm.conversation_template, spoken, override=config.prompts_path).digest
        if config.topics.file:
            run.topics = set(read_topics(config.resolve_path(config.topics.file), config.topics.avoid))
        return run

    def templates(self, category: str) -> dict[str, str]:
        """Digest -> attribute name of every template the category's instructor holds."""
        found: dict[str, str] = {}
        for name, value in vars(self.instructors[category]).items():
            values = value.values() if isinstance(value, dict) else [value]
            found.update({v.digest: name for v in values if isinstance(v, PromptTemplate)})
        return found


def _id(row: dict, run: Run) -> str | None:
    return None if row["id"] == row_id(row["instruction"], row["system"]) else "is not the id of (system, instruction)"


def _category(row: dict, run: Run) -> str | None:
    return None if row["category"] in run.config.categories else "is not a category of the run"


def _text(column: str) -> Callable[[dict, Run], str | None]:
    def check(row: dict, run: Run) -> str | None:
        value = row[column]
        return None if isinstance(value, str) and value.strip() else "is empty"

    return check


def _system(row: dict, run: Run) -> str | None:
    return None if row["system"] is None or row["system"].strip() else "is empty instead of null"


def _messages(row: dict, run: Run) -> str | None:
    turns = row["messages"]
    if not turns or any(t["role"] not in ("system", "user", "assistant") or not t["content"].strip() for t in turns):
        return "is empty, or has a turn with an unknown role or no text"
    first = {role: next((t["content"] for t in turns if t["role"] == role), None) for role in ("system", "user", "assistant")}
    if (first["user"], first["assistant"]) != (row["instruction"], row["response"]):
        return "does not open with the row's instruction and response"
    if not is_multi_turn(turns):
        one = conversation(Candidate(row["category"], row["instruction"], row["response"], row["system"]))
        said = [(t["role"], t["content"]) for t in turns]  # a speaker's name may be set or not
        return None if said == [(t["role"], t["content"]) for t in one] else "is not the row's one exchange"
    return None if first["system"] == row["system"] else "has a system turn other than the row's system"


def _source_id(row: dict, run: Run) -> str | None:
    value = row["source_id"]
    return None if value is None or re.fullmatch(r"[0-9a-f]{16}", value) else f"{value!r} is not a row id"


def _skip(row: dict, run: Run) -> str | None:
    expected = type(run.instructors[row["category"]]).skip_prompt_formatting
    return None if row["skip_prompt_formatting"] is expected else f"is not the category's flag ({expected})"


def _topic(row: dict, run: Run) -> str | None:
    if row["topic"] is None:
        return None
    if not run.topics:
        return f"is {row['topic']!r} in a run without topics (must be null)"
    return None if row["topic"] in run.topics else f"{row['topic']!r} is not in the topics file"


def _model(row: dict, run: Run) -> str | None:
    return None if row["model"] == run.config.teacher.model else f"{row['model']!r} is not the teacher's model"


def _tokens(column: str) -> Callable[[dict, Run], str | None]:
    def check(row: dict, run: Run) -> str | None:
        return None if isinstance(row[column], int) and row[column] > 0 else f"{row[column]!r} is not a positive count"

    return check


def _estimated(row: dict, run: Run) -> str | None:
    return None if isinstance(row["tokens_estimated"], bool) else "is not a bool"


def _digest(row: dict, run: Run) -> str | None:
    parts = row["template_digest"].split("+")
    if not all(_DIGEST.match(p) for p in parts) or len(set(parts)) != len(parts):
        return f"{row['template_digest']!r} is not '+'-joined distinct 12-hex digests"
    instructor = run.instructors[row["category"]]
    if parts[0] != instructor.template.digest:
        return "does not start with the generating template's digest"
    # A conversation is judged with the conversation template, any other row with the judge's own.
    judge = run.conversation_judge_digest if is_multi_turn(row["messages"]) else run.judge_digest
    known = set(run.templates(row["category"])) | ({judge} if judge else set())
    if set(parts) - known:
        return f"names templates the row's category and judge do not have: {sorted(set(parts) - known)}"
    if instructor.response_template is not None and instructor.response_template.digest not in parts:
        return "lacks the answering template's digest"
    if (judge in parts) != bool(judge):
        return "names the LLM judge's template" + ("" if judge else " in a run without one")
    return None


def _similarity(row: dict, run: Run) -> str | None:
    s = row["similarity"]
    if s is None:
        return None
    threshold = run.config.novelty.threshold
    return None if -1.0 - 1e-6 <= s < threshold else f"{s} is not below the novelty threshold {threshold}"


def _verdict(row: dict, run: Run) -> str | None:
    if not run.config.judge.llm.enabled:
        return None if row["verdict"] is None else f"is {row['verdict']!r} though no LLM judge ran (must be null)"
    return None if row["verdict"] else "is null though the LLM judge ran"


def _score(row: dict, run: Run) -> str | None:
    llm = run.config.judge.llm
    if not llm.enabled:
        return None if row["score"] is None else "is set though no LLM judge ran (must be null)"
    ok = row["score"] is not None and llm.threshold <= row["score"] <= 10
    return None if ok else f"{row['score']!r} is not an accepting score (>= {llm.threshold})"


def _created(row: dict, run: Run) -> str | None:
    at = row["created_at"]
    ok = isinstance(at, datetime) and at.tzinfo is not None and run.started - 1 <= at.timestamp() <= run.finished
    return None if ok else f"{at} is not a UTC time within the run"


def _embedding(row: dict, run: Run) -> str | None:
    vector = row["embedding"]
    if vector is None or len(vector) != 384:
        return "is not a 384-d vector"
    norm = math.sqrt(sum(x * x for x in vector))
    return None if abs(norm - 1.0) < 1e-2 else f"has norm {norm:.3f}, not unit length"


RULES: dict[str, Callable[[dict, Run], str | None]] = {
    "id": _id,
    "category": _category,
    "instruction": _text("instruction"),
    "response": _text("response"),
    "system": _system,
    "messages": _messages,
    "skip_prompt_formatting": _skip,
    "topic": _topic,
    "source_id": _source_id,
    "model": _model,
    "prompt_tokens": _tokens("prompt_tokens"),
    "completion_tokens": _tokens("completion_tokens"),
    "tokens_estimated": _estimated,
    "template_digest": _digest,
    "similarity": _similarity,
    "verdict": _verdict,
    "score": _score,
    "created_at": _created,
    "embedding": _embedding,
}


def column_violations(rows: list[dict], run: Run) -> list[str]:
    """`column: row id: what is wrong` for every broken rule (empty when all hold). (That a row
    compared with nothing has a null similarity, not 0.0, is pinned by tests/unit/actors/test_novelty.py:
    which rows were compared with nothing cannot be told from the committed rows alone.)"""
    assert set(RULES) == set(COLUMN_DOCS), f"columns without a rule: {sorted(set(COLUMN_DOCS) - set(RULES))}"
    return [
        f"{column}: {row['id']}: {message}"
        for row in rows
        for column, rule in RULES.items()
        if (message := rule(row, run))
    ]
