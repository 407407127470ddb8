"""The lines a run ends with, under its summary table: where the data is, how many rows, what the
teacher cost, and the commands for the next steps."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Any

from instructflow.cluster.accounting import Progress
from instructflow.config import Config


@dataclass(frozen=True)
class Spend:
    """The teacher's usage over the whole run (every call: topics, generating, answers, judge), as
    the run's rate limiter counted it; `usd` covers the tokens of models with a price."""

    prompt_tokens: int
    completion_tokens: int
    usd: float
    unpriced_tokens: int

    @classmethod
    def of(cls, snapshot: dict[str, Any] | None, progress: Progress) -> Spend:
        """From the limiter's snapshot, or (without one) the tokens in the summary, unpriced."""
        if not snapshot:
            tokens = progress.prompt_tokens + progress.completion_tokens
            return cls(progress.prompt_tokens, progress.completion_tokens, 0.0, tokens)
        return cls(
            int(snapshot.get("prompt_tokens", 0)),
            int(snapshot.get("completion_tokens", 0)),
            float(snapshot.get("cost_spent_usd", 0.0)),
            int(snapshot.get("unpriced_tokens", 0)),
        )


def shown_path(uri: str) -> str:
    """The output location as a user would type it: relative to the working directory when inside it."""
    if "://" in uri:
        return uri
    try:
        relative = os.path.relpath(uri)
    except ValueError:  # another drive (Windows)
        return uri
    return uri if relative.startswith("..") else relative


def cost_line(config: Config, spend: Spend) -> str:
    tokens = spend.prompt_tokens + spend.completion_tokens
    counted = f"{tokens:,} teacher tokens (prompt {spend.prompt_tokens:,} + completion {spend.completion_tokens:,})"
    if config.teacher.kind == "embedded":
        return f"{counted}; no charge: the embedded teacher runs on this machine"
    if config.teacher.budget.prices and (spend.unpriced_tokens == 0 or tokens == 0):
        return f"{counted} = ${spend.usd:,.4f} at the prices in teacher.budget.prices"
    if spend.usd > 0:
        return (f"{counted}; ${spend.usd:,.4f} for the priced ones, {spend.unpriced_tokens:,} tokens of "
                "models without a price in teacher.budget.prices")
    return (f"{counted}; no price for {config.teacher.model} in teacher.budget.prices, so no cost in "
            "dollars (add it there to see the cost and to cap it with max_cost_usd)")


def closing_lines(config: Config, progress: Progress, uri: str, spend: Spend, reason: str) -> list[str]:
    """What the run ends with (plain text, one line each)."""
    where = shown_path(uri)
    arg = shlex.quote(where)
    total = sum(progress.committed.values())
    per_category = ", ".join(f"{c} {progress.committed[c]}" for c in progress.targets)
    lines = [f"{total:,} rows ({per_category}) in {where}/"]
    if total:
        lines.append(f"  data   {where}/data/*.parquet (every column, docs/output.md) and "
                     f"{where}/instructions.jsonl (instruction, response, category)")
    lines.append(f"  cost   {cost_line(config, spend)}")
    steps = []
    if reason != "complete":
        config_arg = shlex.quote(config.source) if config.source != "<string>" else "CONFIG"
        steps.append((f"instructflow generate --config {config_arg}",
                      "the same command again resumes: committed rows are not paid for twice"))
    if total:
        steps += [
            (f"instructflow export {arg} --format sharegpt --format alpaca", "files a trainer reads"),
            (f"instructflow report {arg}", "what the data looks like: lengths, topics, rejects, cost"),
        ]
    if config.teacher.kind == "embedded":
        steps.append(("instructflow init", "a config for your own teacher: OpenAI, vLLM, Ollama, LiteLLM"))
    width = max((len(command) for command, _ in steps), default=0)
    for i, (command, why) in enumerate(steps):
        lines.append(f"  {'next' if i == 0 else '    '}   {command:<{width}}   # {why}")
    return lines
