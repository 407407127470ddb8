"""PII scrubbing in the judge stage: rows masked or rejected, findings counted in the books and shown
in the run summary; inputs (seed files) scrubbed before they reach a prompt."""

import asyncio
import json

from rich.console import Console

from instructflow.actors.core.judge import JudgeChain, JudgeStage
from instructflow.actors.core.ledger import Accounts, Ledger
from instructflow.actors.core.stage import StageLoop
from instructflow.cluster.accounting import Progress
from instructflow.cluster.display import Display
from instructflow.config import LlmJudge, Pii, Rules, parse_config
from instructflow.instructors.categories.general import General, GeneralParams
from instructflow.instructors.record import Candidate

LEAKY = "Email the summary to dana.whitfield@example-corp.com and call (212) 555-0147."


def rows():
    return [
        Candidate(category="general", instruction="Write a reminder for the team about Friday.", response=LEAKY),
        Candidate(category="general", instruction="Explain how tides work in two sentences.", response="The moon pulls the oceans."),
        Candidate(category="general", instruction="Hi", response=LEAKY),  # the rules reject it first
    ]


def run_stage(pii: Pii) -> tuple[Ledger, list, list[tuple[Candidate, str]]]:
    accounts, sent, rejects = Accounts(), [], []
    batch = rows()
    given = [batch]

    async def take(max_items, timeout):
        return (given.pop(), False) if given else ([], True)

    async def put(edge, cands):
        sent.extend(cands)

    async def report(delta):
        accounts.record(delta)

    loop = StageLoop(JudgeStage(JudgeChain(Rules(), LlmJudge(), pii=pii), None), take=take, put=put,
                     report=report, on_rejects=rejects.extend, idle_timeout=0.01)
    asyncio.run(loop.run())
    return accounts.total, sent, rejects


def test_mask_scrubs_accepted_rows_and_counts_what_it_found():
    books, sent, rejects = run_stage(Pii(action="mask"))
    masked = "Email the summary to <EMAIL> and call <PHONE>."
    assert [c.response for c in sent] == [masked, "The moon pulls the oceans."]
    # A row the rules reject is scrubbed too: rejects.jsonl is output as well.
    assert [(c.response, r) for c, r in rejects] == [(masked, "instruction_too_short")]
    assert books.scrubbed == {("general", "email"): 2, ("general", "phone"): 2}
    assert books.by_reason() == {"judge:instruction_too_short": 1}


def test_drop_rejects_the_row_through_the_rejection_path():
    books, sent, rejects = run_stage(Pii(action="drop"))
    assert [c.instruction for c in sent] == ["Explain how tides work in two sentences."]
    assert sorted(r for _, r in rejects) == ["instruction_too_short", "pii:email"]
    dropped = next(c for c, r in rejects if r == "pii:email")
    # rejects.jsonl shows why the row went, not the PII itself
    assert dropped.response == "Email the summary to <EMAIL> and call <PHONE>."
    assert books.by_reason()["judge:pii:email"] == 1
    assert books.scrubbed == {("general", "email"): 2, ("general", "phone"): 2}


def test_off_before_commit_leaves_rows_alone():
    books, sent, _ = run_stage(Pii(before_commit=False))
    assert sent[0].response == LEAKY and not books.scrubbed


def test_the_summary_shows_pii_per_entity_with_the_action():
    config = parse_config("categories: {general: {count: 2}}\npii: {action: replace}\nrun: {display: plain}")
    progress = Progress(targets={"general": 2})
    progress.books.scrubbed.update({("general", "email"): 3, ("general", "phone"): 1})
    progress.inputs_scrubbed.update({"email": 2})
    console = Console(record=True, width=200)
    Display(config, mode="plain", console=console).finish(progress, "done")
    assert "rows: email 3  phone 1 · inputs: email 2  (replace)" in console.export_text()


def test_seed_file_tasks_are_scrubbed_before_any_prompt(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps({"instruction": t}) for t in [
        "Draft a reply to marco.bianchi@example-mail.it about the invoice.",
        "List five uses for baking soda.",
    ]))
    params = GeneralParams(count=1, seed_file=str(seeds))
    masked = General(params, pii=Pii())
    assert masked.seeds == ["Draft a reply to <EMAIL> about the invoice.", "List five uses for baking soda."]
    assert masked.inputs_scrubbed == {"email": 1}
    dropped = General(params, pii=Pii(action="drop"))
    assert dropped.seeds == ["List five uses for baking soda."]
    assert General(params, pii=Pii(inputs=False)).seeds[0].startswith("Draft a reply to marco.bianchi@")
