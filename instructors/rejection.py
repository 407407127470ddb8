"""A category's verdict that a candidate is unfit, with a named reason.

An answer call whose reply arrived but cannot make a row (a role-play transcript that breaks format,
for instance) raises `CandidateRejected` from `respond`. The runner then treats the candidate like
one whose answer stayed cut (`truncation.ReplyTruncated`): it is rejected by the `instructor` stage
with `reason`, counted in the books and the metrics under that reason, and written to
``rejects.jsonl`` with `detail` and the reply text. Nothing about the teacher failed, so no dead
letter is written and the failure streak is not extended.
"""

from __future__ import annotations


class CandidateRejected(Exception):
    """A candidate a category rejects after its answer call.

    Args:
        reason: the reject reason, a short snake_case name (the key in the books and metrics).
        detail: what exactly was wrong, for the rejects log.
        text: the reply the verdict was made on, for the rejects log (the candidate's response).
    """

    def __init__(self, reason: str, detail: str = "", text: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.text = reason, detail, text
