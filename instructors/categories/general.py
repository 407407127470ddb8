"""`general`: one call brainstorms a list of varied tasks; each novel task is then answered.

With `seed_file` (Self-Instruct's classic mode) a few human-written example tasks are drawn into
each prompt, which steers the teacher towards the variety and realism of the seed set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors.base import TaskList
from instructflow.instructors.registry import register


class GeneralParams(CategoryParams):
    min_words: int = Field(6, ge=1, le=200, description="shorter list items are dropped")
    seed_file: str | None = Field(None, description="JSONL of example tasks with an `instruction` field")
    seed_examples: int = Field(3, ge=0, le=20, description="examples drawn from seed_file per call")


def read_seed_tasks(path: str | Path) -> list[str]:
    """Instructions from a JSONL seed file; errors name the file and line."""
    tasks = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"seed_file {path}: cannot read: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"seed_file {path}:{number}: not JSON: {exc.msg}") from None
        text = record.get("instruction") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"seed_file {path}:{number}: needs a non-empty string field `instruction`")
        tasks.append(text.strip())
    if not tasks:
        raise ValueError(f"seed_file {path}: has no tasks")
    return tasks


@register
class General(TaskList):
    """Open-ended tasks of every kind (explain, rewrite, plan, compare, ...), answered one by one."""

    category = "general"
    Params = GeneralParams
    variables = frozenset({"count", "topic", "examples"})
    params: GeneralParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seeds = self.clean_inputs(read_seed_tasks(self.params.seed_file)) if self.params.seed_file else []

    def choose(self) -> dict[str, Any]:
        k = min(self.params.seed_examples, len(self.seeds))
        return {**super().choose(), "examples": self.rng.sample(self.seeds, k)}

