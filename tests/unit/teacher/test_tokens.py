"""Token estimates with the bundled tokenizer, and the usage ledger."""

from __future__ import annotations

from instructflow.instructors.teacher.tokens import (
    UsageLedger,
    estimate_prompt_tokens,
    estimate_tokens,
)


def test_estimate_uses_a_real_tokenizer() -> None:
    assert estimate_tokens("") == 0
    # WordPiece splits rare words into pieces, so this is more than the 2 words a split would give.
    assert estimate_tokens("unbelievably tokenization") > 2
    assert estimate_tokens("hello") == 1


def test_estimate_is_not_truncated_and_scales_with_length() -> None:
    short = estimate_tokens("The lighthouse keeper wrote a letter. ")
    assert estimate_tokens("The lighthouse keeper wrote a letter. " * 100) == 100 * short  # beyond 128


def test_prompt_estimate_adds_message_overhead() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a river."}]
    assert estimate_prompt_tokens(messages) > estimate_tokens("Be brief.") + estimate_tokens("Name a river.")


def test_ledger_counts_per_model_and_category() -> None:
    ledger = UsageLedger()
    ledger.add(model="a", category="trivia", prompt_tokens=10, completion_tokens=5)
    ledger.add(model="a", category="joke", prompt_tokens=1, completion_tokens=2, estimated=True)
    ledger.add(model="b", category="trivia", prompt_tokens=3, completion_tokens=4)
    snap = ledger.snapshot()
    assert snap["prompt_tokens"] == 14 and snap["completion_tokens"] == 11 and snap["total_tokens"] == 25
    assert snap["estimated_replies"] == 1
    assert snap["by_model"]["a"] == {"prompt_tokens": 11, "completion_tokens": 7, "replies": 2, "estimated_replies": 1}
    assert snap["by_category"]["trivia"]["replies"] == 2
