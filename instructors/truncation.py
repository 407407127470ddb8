"""Replies cut at the token cap: nothing built from one may pass for whole.

A teacher that stops at `max_tokens` says so with `finish_reason` "length" (`Reply.truncated`).
What happens then depends on the call:

- an **answer** (a candidate's response, or a text a category builds one from) is continued when the
  category allows it (`max_continuations`): the cut answer goes back as the assistant's turn with a
  request to go on, and the parts are joined. An answer still cut after that raises `ReplyTruncated`,
  and the runner rejects the candidate with reason `truncated` (counted, and in `rejects.jsonl`);
- a **list** (a generating call) keeps its complete items: `parsing.whole_items` leaves out the one
  the cut went through;
- the **LLM judge** (`actors.core.judge`) asks once more with twice the room, then rejects the row
  (`judge_truncated`).
"""

from __future__ import annotations

import dataclasses

from instructflow.instructors.teacher.api import Reply, Teacher

TRUNCATED = "truncated"  # the reject reason of an answer that stayed cut
CONTINUE_CALL = "continue"  # the call name of a continuation (X-Instructflow-Call, metrics)
CONTINUE_PROMPT = (
    "Your reply was cut off by the length limit. Continue it from the exact point where it stopped. "
    "Do not repeat anything you already wrote and do not add an introduction."
)
_ATTACHED = tuple(",.;:!?)]}'\"’”…%")  # characters that follow the previous word without a space
_MIN_OVERLAP = 12  # shorter repeats of the cut answer's end are not trusted as repeats


class ReplyTruncated(Exception):
    """An answer call's reply stopped at `max_tokens` and could not be continued (or stayed cut
    through every continuation); the candidate is rejected with reason `truncated`."""

    def __init__(self, category: str, call: str, calls: int, max_tokens: int | None, text: str = "") -> None:
        cap = f"max_tokens {max_tokens}" if max_tokens else "teacher.max_tokens"
        tried = "" if calls == 1 else f" after {calls - 1} continuation(s)"
        super().__init__(f"{category} {call}: the reply stopped at {cap}{tried}")
        self.category, self.call, self.calls, self.max_tokens = category, call, calls, max_tokens
        self.text = text  # the cut answer (joined with its continuations), for the rejects log


async def ask_whole(
    teacher: Teacher,
    messages: list[dict[str, str]],
    *,
    category: str,
    call: str,
    max_tokens: int | None,
    temperature: float | None,
    continuations: int,
    grammar: str | None = None,
) -> Reply:
    """One answer call, continued up to `continuations` times while its reply stops at the cap.

    Returns one `Reply`: the joined text, the tokens of every call added up, and the last call's
    `finish_reason` (so it is still `truncated` when the last continuation was cut as well). The
    caller decides what a reply that stayed cut means; continuations are sent as call `continue`.

    Raises:
        TeacherError: from any of the calls (tokens of earlier calls were billed but are not returned).
    """
    shape = {"grammar": grammar} if grammar else {}  # a continuation goes on mid-shape: no grammar
    reply = await teacher.chat(
        messages, category=category, call=call, max_tokens=max_tokens, temperature=temperature, **shape
    )
    for _ in range(continuations):
        if not reply.truncated:
            break
        follow_up = [
            *messages,
            {"role": "assistant", "content": reply.text},
            {"role": "user", "content": CONTINUE_PROMPT},
        ]
        more = await teacher.chat(
            follow_up, category=category, call=CONTINUE_CALL, max_tokens=max_tokens, temperature=temperature
        )
        reply = _joined(reply, more)
    return reply


def _joined(first: Reply, more: Reply) -> Reply:
    return dataclasses.replace(
        more,
        text=join_continuation(first.text, more.text),
        prompt_tokens=first.prompt_tokens + more.prompt_tokens,
        completion_tokens=first.completion_tokens + more.completion_tokens,
        tokens_estimated=first.tokens_estimated or more.tokens_estimated,
        latency_s=first.latency_s + more.latency_s,
        attempts=first.attempts + more.attempts,
    )


def join_continuation(head: str, tail: str) -> str:
    """A cut answer `head` followed by its continuation `tail`.

    Teachers often restate the last words before going on: a repeat of `head`'s end (at least
    `_MIN_OVERLAP` characters) at the start of `tail` is dropped. A space goes between the two unless
    one side already has whitespace there or `tail` starts with punctuation; a cut that fell inside a
    word therefore gets a stray space, which is the rarer case (tokens mostly start at word starts).
    """
    tail = tail.lstrip(" \t")
    end = head.rstrip()
    for size in range(min(len(end), len(tail), 300), _MIN_OVERLAP - 1, -1):
        if end.endswith(tail[:size]):
            head, tail = end, tail[size:]
            break
    if not head or not tail or head[-1].isspace() or tail[0].isspace() or tail.startswith(_ATTACHED):
        return head + tail
    return f"{head} {tail}"
