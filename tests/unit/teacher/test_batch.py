"""Batch mode (`teacher.mode: batch`) against the real stub server: the collector core, no Ray.

Each test reads what the stub says it ran and paid for (`stats()["batch"]`), so "nothing paid
twice" is the server's count, not the client's claim.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from instructflow.actors.core.storage import open_store
from instructflow.config import Budget, Limits, Price, TeacherConfig
from instructflow.instructors.teacher.api import GENERATING, FatalTeacherError, RequestFailed
from instructflow.instructors.teacher.batch import BATCH_DIR, BatchJournal
from instructflow.instructors.teacher.client import TeacherClient
from instructflow.instructors.teacher.limits import RateLimiter
from instructflow.instructors.teacher.stub import StubTeacher

FAST = {"max_wait_s": 0.05, "poll_interval_s": 0.05}
WINDOW_S = 0.1  # the stub's batches end this long after they are created


@pytest.fixture
def stub() -> Iterator[StubTeacher]:
    """A fresh stub teacher whose batches take a tenth of a second instead of up to a day."""
    with StubTeacher(seed=7, batch_window_s=WINDOW_S) as server:
        yield server


def prompt(n: int) -> list[dict[str, str]]:
    # The stub answers a generating trivia prompt with as many questions as it asks for, so each
    # reply shows which request it was matched to.
    return [{"role": "user", "content": f"Write {n} trivia questions about tides."}]


def questions(text: str) -> int:
    return text.count("QUESTION:")


@pytest.fixture
def batch_client(make_config: Callable[..., TeacherConfig], tmp_path: Path) -> Callable[..., TeacherClient]:
    """A batching TeacherClient on a given stub; each call is a new process's client on the same
    output directory (same journal files, a new session)."""

    def make(stub: StubTeacher, limiter: Any = None, model: str = "stub-model", **batch: Any) -> TeacherClient:
        config = make_config(model=model, mode="batch", batch={**FAST, **batch})
        return TeacherClient(config, limiter, base_url=stub.base_url, journal=BatchJournal(open_store(str(tmp_path))))

    return make


def ask_all(client: TeacherClient, counts: list[int], call: str = "generate") -> list[Any]:
    async def go() -> list[Any]:
        try:
            jobs = [client.chat(prompt(n), category="trivia", call=call) for n in counts]
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await client.aclose()

    return asyncio.run(go())


def journal(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted((root / BATCH_DIR).glob("journal-*.jsonl"))
            for line in path.read_text().splitlines()]


def test_lines_come_back_matched_by_custom_id(stub: StubTeacher, batch_client, tmp_path: Path) -> None:
    client = batch_client(stub, max_requests=4)
    counts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    replies = ask_all(client, counts)
    assert [questions(r.text) for r in replies] == counts
    batch = stub.stats()["batch"]
    assert batch["batches"] == 3 and batch["paid"] == 10 and batch["paid_twice"] == []  # 4 + 4 + 2 lines
    assert stub.stats()["requests"] == 0  # not one synchronous request
    stats = client.stats()
    assert stats.replies == 10 and stats.batch["batches"] == 3 and stats.batch["lines"] == 10
    records = journal(tmp_path)
    assert sum(len(r["ids"]) for r in records if r["kind"] == "submit") == 10
    assert sum(r["kind"] == "batch" for r in records) == 3
    assert sum(len(r["ids"]) for r in records if r["kind"] == "used") == 10
    ends = [r for r in records if r["kind"] == "end"]
    assert all((tmp_path / BATCH_DIR / r["output"]).is_file() for r in ends) and len(ends) == 3


def test_line_errors_fail_like_sync_replies(stub: StubTeacher, batch_client) -> None:
    stub.set_faults(batch_p_line_error=0.4)
    client = batch_client(stub)
    replies = ask_all(client, [2] * 12)
    stats = client.stats()
    line_errors = stub.stats()["batch"]["lines_by_status"]["500"]
    assert line_errors > 0 and stats.batch["line_errors"] == line_errors
    # A 500 line is retried by the client's own loop, in a later batch, under a new custom_id.
    assert stats.requests["5xx"] == line_errors and stats.retries >= 1
    done = [r for r in replies if not isinstance(r, BaseException)]
    failed = [r for r in replies if isinstance(r, RequestFailed)]
    assert len(done) + len(failed) == 12 and all(f.reason == "server_error" for f in failed)
    assert stub.stats()["batch"]["paid"] == len(done) and stub.stats()["batch"]["paid_twice"] == []

    stub.set_faults(batch_p_line_error=0.0)
    bad = batch_client(stub, model="")  # the stub answers a line without a model with 400: not retried
    (failure,) = ask_all(bad, [1])
    assert isinstance(failure, RequestFailed) and failure.reason == "bad_request"
    assert bad.stats().requests == {"4xx": 1}


def test_expired_and_failed_batches_send_their_lines_again(stub: StubTeacher, batch_client) -> None:
    stub.set_faults(batch_expire_next=1)
    client = batch_client(stub)
    replies = ask_all(client, [1, 2, 3, 4, 5, 6])
    assert [questions(r.text) for r in replies] == [1, 2, 3, 4, 5, 6]
    got = client.stats().batch
    assert got["expired"] == 1 and got["resent"] == 3 and got["batches"] == 2 and got["lines"] == 9
    seen = stub.stats()["batch"]
    assert seen["lines_not_run"] == 3 and seen["paid"] == 6 and seen["paid_twice"] == []

    stub.set_faults(batch_fail_next=5)
    failing = batch_client(stub, max_batch_attempts=2)
    (failure,) = ask_all(failing, [1])
    assert isinstance(failure, RequestFailed) and failure.reason == "batch_failed"
    assert failing.stats().batch["failed"] == 2 and failing.stats().batch["gave_up"] == 1
    assert failing.stats().retries == 0  # the collector already sent it in two batches


class DiesBeforeRecordingTheBatchId:
    """An output store whose process dies right after the batch is created, before its id is
    written down (the write of the `batch` record fails, and nothing is written after it)."""

    def __init__(self, store: Any) -> None:
        self.store, self.supports_append = store, store.supports_append
        self.dead = False

    def append(self, rel: str, data: bytes, expected_size: int) -> None:
        self.dead = self.dead or b'"kind":"batch"' in data
        if self.dead:
            raise OSError("killed")
        self.store.append(rel, data, expected_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize("killed", ["after the batch id is recorded", "before the batch id is recorded"])
def test_a_restart_reattaches_to_a_pending_batch_and_pays_nothing_twice(
    stub: StubTeacher, batch_client, make_config, tmp_path: Path, killed: str
) -> None:
    stub.set_faults(batch_window_s=0.6)
    counts = [1, 2, 3, 4]

    async def killed_while_pending() -> None:
        store = open_store(str(tmp_path))
        if killed.startswith("before"):
            store = DiesBeforeRecordingTheBatchId(store)
        config = make_config(mode="batch", batch=FAST)
        client = TeacherClient(config, base_url=stub.base_url, journal=BatchJournal(store))
        jobs = [asyncio.ensure_future(client.chat(prompt(n), category="trivia", call="generate")) for n in counts]
        while not (any(r["kind"] == "batch" for r in journal(tmp_path)) or getattr(store, "dead", False)):
            await asyncio.sleep(0.01)  # until the batch exists (and, or not, its id is on disk)
        for job in jobs:  # the process dies: nobody is left waiting for the batch
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await client.aclose()

    asyncio.run(killed_while_pending())
    assert stub.stats()["batch"]["batches"] == 1 and stub.stats()["batch"]["paid"] == 0  # still running
    assert any(r["kind"] == "batch" for r in journal(tmp_path)) == killed.startswith("after")

    # A new process sends two of the four requests again: it waits for the running batch.
    first = batch_client(stub)
    assert [questions(r.text) for r in ask_all(first, counts[:2])] == counts[:2]
    assert first.stats().batch["attached"] == 2 and first.stats().batch["batches"] == 0
    # Another one sends the other two: served from the file the last one downloaded.
    second = batch_client(stub)
    assert [questions(r.text) for r in ask_all(second, counts[2:])] == counts[2:]
    assert second.stats().batch["reused"] == 2 and second.stats().batch["batches"] == 0
    seen = stub.stats()["batch"]
    assert seen["batches"] == 1 and seen["paid"] == 4 and seen["paid_twice"] == []

    # A result is handed out once: the same requests once more are new requests, paid once each.
    third = batch_client(stub)
    assert [questions(r.text) for r in ask_all(third, counts)] == counts
    seen = stub.stats()["batch"]
    assert third.stats().batch["batches"] == 1 and seen["paid"] == 8 and seen["paid_twice"] == []
    assert len(list((tmp_path / BATCH_DIR).glob("journal-*.jsonl"))) == 4  # one per process


def test_batched_tokens_cost_the_batch_price_and_generating_calls_stay_sync(stub: StubTeacher, batch_client) -> None:
    prices = {"stub-model": Price(prompt_per_1k=1.0, completion_per_1k=2.0)}
    limiter = RateLimiter(Limits(), Budget(prices=prices))
    client = batch_client(stub, limiter)
    (reply,) = ask_all(client, [3], call="respond")
    full = (reply.prompt_tokens * 1.0 + reply.completion_tokens * 2.0) / 1000.0
    assert limiter.spent_usd == pytest.approx(full * 0.5)

    async def generating() -> None:
        GENERATING.set(True)  # what the producer sets around an instructor's generating calls
        sync = batch_client(stub)
        try:
            await sync.chat(prompt(2), category="trivia", call="generate")
        finally:
            await sync.aclose()

    asyncio.run(generating())
    assert stub.stats()["requests"] == 1 and stub.stats()["batch"]["batches"] == 1


def test_the_journal_works_on_an_object_store_without_append(stub: StubTeacher, make_config) -> None:
    import fsspec
    import pyarrow.fs as pafs

    memory = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))
    store = open_store(f"/bucket/{uuid.uuid4().hex}", memory)
    assert not store.supports_append

    def client() -> TeacherClient:
        config = make_config(mode="batch", batch=FAST)
        return TeacherClient(config, base_url=stub.base_url, journal=BatchJournal(store))

    assert [questions(r.text) for r in ask_all(client(), [1, 2])] == [1, 2]
    # The journal object was replaced whole at each record; a new process reads it back.
    again = BatchJournal(store).read_all()
    assert [r["kind"] for r in again] == ["submit", "batch", "end", "used"]
    assert [questions(r.text) for r in ask_all(client(), [1, 2])] == [1, 2]  # used: new lines
    assert stub.stats()["batch"]["paid"] == 4 and stub.stats()["batch"]["paid_twice"] == []


def test_a_server_without_the_batch_api_stops_the_run(stub: StubTeacher, make_config, tmp_path: Path) -> None:
    config = make_config(mode="batch", batch=FAST)
    # The stub's chat endpoint without its Files and Batch API: a local server such as vLLM.
    client = TeacherClient(config, base_url=f"{stub.base_url}/no-batches", journal=BatchJournal(open_store(str(tmp_path))))
    (failure,) = ask_all(client, [1])
    assert isinstance(failure, FatalTeacherError) and "teacher.mode: sync" in str(failure), failure


def test_stub_cancels_a_running_batch(stub: StubTeacher) -> None:
    stub.set_faults(batch_window_s=30)

    async def go() -> tuple[Any, bytes]:
        async with openai.AsyncOpenAI(base_url=stub.base_url, api_key="x") as api:
            line = {"custom_id": "trivia:respond:x:0", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "m", "messages": prompt(1)}}
            upload = await api.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
            batch = await api.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                             completion_window="24h")
            await api.batches.cancel(batch.id)
            ended = await api.batches.retrieve(batch.id)
            errors = (await api.files.content(ended.error_file_id)).content
            return ended, errors

    ended, errors = asyncio.run(go())
    assert ended.status == "cancelled" and ended.output_file_id is None
    assert json.loads(errors)["error"]["code"] == "batch_cancelled"
    assert stub.stats()["batch"]["paid"] == 0
