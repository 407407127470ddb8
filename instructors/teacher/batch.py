"""Batch mode: teacher calls sent through the OpenAI Batch API, at half the price.

A `TeacherClient` in `teacher.mode: batch` hands each attempt of a batched call to a
`BatchCollector` instead of making one HTTP request. The collector gathers lines for up to
`max_wait_s` (or until `max_requests` wait), writes them as JSONL, uploads the file (`POST /files`,
purpose ``batch``), creates the batch (`POST /batches`, completion window 24h), looks it up every
`poll_interval_s` while someone waits for it and, once it has ended, downloads its output and error
files and hands each waiting caller its line, found by ``custom_id``. The client's retry loop,
limiter and accounting stay as they are: a line with an error status comes back as the failure a
synchronous reply with that status would be.

``custom_id`` is ``<category>:<call>:<hash of url and body>:<n>``: the same request gets the same
id, and ``n`` counts the earlier copies of it whose results were already used. Every batch (with
its lines), every batch's end (with its downloaded files, kept under the output directory) and
every result handed out go into a journal under ``<output>/teacher-batches/``, which a collector
reads when it starts. A batch's lines are recorded before it is created, under a token that the
batch carries in its metadata, so a process killed between the two is found again by listing. A request sent again after a restart therefore finds its line -- in a batch
still running, or in a downloaded file -- and waits for it or takes it instead of paying for it
again; no result is handed out twice. Lines that an expired, failed or cancelled batch never ran
go out again in a new batch, in at most `max_batch_attempts` batches, and then fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import httpx
import openai

from instructflow.config.schema import TeacherBatch
from instructflow.instructors.teacher.api import GENERATING

log = logging.getLogger(__name__)

BATCH_DIR = "teacher-batches"  # under the run's output directory
COMPLETION_WINDOW = "24h"  # the only window the Batch API offers
WINDOW_S = 24 * 3600.0
ENDED = frozenset({"completed", "expired", "failed", "cancelled"})


class JournalStore(Protocol):
    """What the journal needs of an output location (`actors.core.storage.Store` has it)."""

    supports_append: bool

    def makedirs(self, rel: str) -> None: ...
    def listdir(self, rel: str) -> list[str]: ...
    def size(self, rel: str) -> int | None: ...
    def read(self, rel: str) -> bytes: ...
    def append(self, rel: str, data: bytes, expected_size: int) -> None: ...
    def write_atomic(self, rel: str, data: Any) -> None: ...


@dataclass(frozen=True)
class LineResult:
    """What became of one line.

    Attributes:
        status: the line's HTTP status; None when it never ran (or never reached a batch).
        body: the completion (status 200).
        error: the line's error status as the SDK's exception (the client maps it as a sync reply).
        code: why a line never ran: batch_expired, batch_failed, batch_cancelled, connection.
        retryable: for lines that never ran: whether the client may try again.
    """

    status: int | None
    body: Any = None
    error: openai.APIStatusError | None = None
    code: str = ""
    message: str = ""
    retryable: bool = False


@dataclass
class BatchStats:
    """What one collector did (summed over a run's clients by the driver)."""

    batches: int = 0  # batches created
    lines: int = 0  # lines sent, resent ones included
    resent: int = 0  # lines sent again after their batch expired, failed or was cancelled
    attached: int = 0  # requests that joined a line an earlier process had sent (no new line)
    reused: int = 0  # requests served from a downloaded file an earlier process paid for
    line_errors: int = 0  # lines that came back with an error status
    expired: int = 0  # batches that ended so
    failed: int = 0
    cancelled: int = 0
    gave_up: int = 0  # lines that no batch ran within max_batch_attempts
    poll_errors: int = 0  # lookups or downloads that failed (tried again at the next poll)


def longest_wait_s(settings: TeacherBatch) -> float:
    """How long one batched call may wait at most: each batch it is sent in may take the whole
    window. The run's stall watchdog waits at least this long in batch mode."""
    return settings.max_batch_attempts * (WINDOW_S + settings.max_wait_s + settings.poll_interval_s)


def request_key(url: str, body: dict[str, Any], category: str, call: str) -> str:
    """The deterministic part of a custom_id: category, call and a hash of what is sent."""
    blob = json.dumps({"url": url, "body": body}, sort_keys=True, separators=(",", ":"))
    return f"{category}:{call}:{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


class BatchJournal:
    """The record of a run's batches under ``teacher-batches/``, and the files they brought back.

    Each collector appends to a journal file of its own (``journal-<session>.jsonl``), so processes
    never write the same file; each reads them all. Records: ``submit`` (a token and the custom_ids,
    written before the upload), ``batch`` (the token, the batch id), ``end`` (status, names of the
    downloaded files), ``used`` (custom_ids whose results were handed out). A torn last line (a
    process killed mid-write) is skipped.
    """

    def __init__(self, store: JournalStore, session: str | None = None) -> None:
        self.store = store
        self.session = session or uuid.uuid4().hex[:12]
        self.rel = f"{BATCH_DIR}/journal-{self.session}.jsonl"
        self._size = 0
        self._chunks: list[bytes] = []  # the whole file, for stores that cannot append
        self._lock = asyncio.Lock()

    def read_all(self) -> list[dict[str, Any]]:
        """Every collector's records, oldest first."""
        records: list[dict[str, Any]] = []
        for name in self.store.listdir(BATCH_DIR):
            if not (name.startswith("journal-") and name.endswith(".jsonl")):
                continue
            for line in self.store.read(f"{BATCH_DIR}/{name}").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        records.append(record)
        records.sort(key=lambda r: r.get("at", 0.0))  # stable: one file's order is kept
        return records

    async def write(self, **record: Any) -> None:
        """Appends one record durably."""
        data = json.dumps({**record, "at": time.time()}, separators=(",", ":")).encode() + b"\n"
        async with self._lock:
            await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        if self._size == 0:
            self.store.makedirs(BATCH_DIR)
        if self.store.supports_append:
            self.store.append(self.rel, data, self._size)
        else:  # an object store: the journal object is replaced whole
            self._chunks.append(data)
            self.store.write_atomic(self.rel, list(self._chunks))
        self._size += len(data)

    async def save(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self.store.write_atomic, f"{BATCH_DIR}/{name}", data)

    async def load(self, name: str) -> bytes:
        rel = f"{BATCH_DIR}/{name}"
        return await asyncio.to_thread(lambda: self.store.read(rel) if self.store.size(rel) is not None else b"")


@dataclass
class _Line:
    cid: str
    url: str
    body: dict[str, Any]
    batches: int = 0  # batches it has been sent in


class BatchCollector:
    """Gathers one process's batched calls into Batch API jobs (see the module docstring).

    Args:
        client: the `openai.AsyncOpenAI` of the teacher client (its key, base URL and transport).
        settings: `config.TeacherBatch`.
        journal: where batches, their files and used results are recorded.
    """

    def __init__(self, client: openai.AsyncOpenAI, settings: TeacherBatch, journal: BatchJournal) -> None:
        self.client = client
        self.settings = settings
        self.journal = journal
        self.stats = BatchStats()
        self._loading: asyncio.Task[None] | None = None
        self._used: set[str] = set()  # custom_ids whose results were handed out (any process)
        self._claimed: set[str] = set()  # custom_ids a caller of this process is waiting for
        self._where: dict[str, str] = {}  # custom_id -> the batch it was last sent in
        self._submitted: dict[str, list[str]] = {}  # token -> custom_ids of a submission with no batch id
        self._submitted_at: dict[str, float] = {}
        self._finding: dict[str, asyncio.Task[str | None]] = {}  # token -> its lookup among the batches
        self._members: dict[str, list[str]] = {}  # batch -> its custom_ids
        self._ended: dict[str, dict[str, Any]] = {}  # batch -> its `end` record
        self._results: dict[str, dict[str, LineResult]] = {}  # batch -> results not handed out yet
        self._waiting: dict[str, asyncio.Future[LineResult]] = {}
        self._lines: dict[str, _Line] = {}
        self._queue: deque[_Line] = deque()
        self._oldest: float | None = None  # when the oldest queued line was queued
        self._kick = asyncio.Event()
        self._watch: set[str] = set()  # running batches someone here waits for
        self._flusher: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None

    def takes(self, call: str) -> bool:
        """Whether a call goes through batches: all but generating ones (whatever their `call`
        name), unless `generate` is on."""
        return self.settings.generate or not GENERATING.get()

    def snapshot(self) -> dict[str, int]:
        return asdict(self.stats)

    async def aclose(self) -> None:
        """Stops sending and polling; batches already created run on (a restart finds them)."""
        for task in (self._flusher, self._poller, self._loading, *self._finding.values()):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- one request ----------------------------------------------------------------------------
    async def send(self, url: str, body: dict[str, Any], category: str, call: str) -> LineResult:
        """Sends one request as a batch line (or finds it already sent) and waits for its result."""
        await self._load()
        key = request_key(url, body, category, call)
        n = 0
        while f"{key}:{n}" in self._used or f"{key}:{n}" in self._claimed:
            n += 1
        line = _Line(f"{key}:{n}", url, body)
        self._claimed.add(line.cid)
        waiter: asyncio.Future[LineResult] = asyncio.get_running_loop().create_future()
        self._waiting[line.cid], self._lines[line.cid] = waiter, line
        try:
            await self._route(line)
            return await waiter
        finally:
            self._claimed.discard(line.cid)
            self._waiting.pop(line.cid, None)
            self._lines.pop(line.cid, None)

    async def _route(self, line: _Line) -> None:
        batch = self._where.get(line.cid)
        if batch in self._submitted or batch in self._finding:  # its sender died before it learned the id
            if batch not in self._finding:
                self._finding[batch] = asyncio.get_running_loop().create_task(self._find(batch))
            batch = await asyncio.shield(self._finding[batch])
        if batch is None:
            self._enqueue(line)
            return
        line.batches = 1
        if batch not in self._ended:  # still running: wait for it with whoever else does
            self.stats.attached += 1
            self._follow(batch)
            return
        result = (await self._batch_results(batch)).pop(line.cid, None)
        if result is not None:
            self.stats.reused += 1
            await self._hand_out([(line.cid, result)])
        else:  # that batch never ran it
            self._resend(line, self._ended[batch].get("status", "failed"))

    async def _load(self) -> None:
        if self._loading is None:  # one read of the journals, which every early caller waits for
            self._loading = asyncio.get_running_loop().create_task(self._read_journals())
        await asyncio.shield(self._loading)

    async def _read_journals(self) -> None:
        for record in await asyncio.to_thread(self.journal.read_all):
            kind, batch = record.get("kind"), record.get("batch", "")
            if kind == "submit":
                self._submitted[record["token"]] = ids = list(record.get("ids", []))
                self._submitted_at[record["token"]] = record.get("at", 0.0)
                self._where.update(dict.fromkeys(ids, record["token"]))
            elif kind == "batch" and (ids := self._submitted.pop(record.get("token", ""), None)) is not None:
                self._members[batch] = ids
                self._where.update(dict.fromkeys(ids, batch))
            elif kind == "end":
                self._ended[batch] = record
            elif kind == "used":
                self._used.update(record.get("ids", []))

    # -- sending batches ------------------------------------------------------------------------
    def _enqueue(self, line: _Line) -> None:
        self._queue.append(line)
        if self._oldest is None:
            self._oldest = time.monotonic()
        self._kick.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._queue:
            due = (self._oldest or time.monotonic()) + self.settings.max_wait_s
            left = due - time.monotonic()
            if len(self._queue) < self.settings.max_requests and left > 0:
                self._kick.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), left)
                continue
            lines = self._take()
            self._oldest = time.monotonic() if self._queue else None
            if not lines:
                continue
            try:
                await self._submit(lines)
            except Exception as exc:  # noqa: BLE001 - its callers must hear of it, not wait forever
                log.exception("sending a batch of %d lines failed", len(lines))
                failure = LineResult(None, code="batch_error", message=f"sending a batch failed: {exc!r}"[:300])
                await self._hand_out([(ln.cid, failure) for ln in lines], used=False)

    def _take(self) -> list[_Line]:
        """Up to `max_requests` queued lines for one endpoint whose callers still wait."""
        taken: list[_Line] = []
        kept: deque[_Line] = deque()
        while self._queue:
            line = self._queue.popleft()
            waiter = self._waiting.get(line.cid)
            if waiter is None or waiter.done():
                continue  # its caller gave up before it was sent: nothing to pay for
            if len(taken) < self.settings.max_requests and (not taken or line.url == taken[0].url):
                taken.append(line)
            else:
                kept.append(line)
        self._queue = kept
        return taken

    async def _submit(self, lines: list[_Line]) -> None:
        url = lines[0].url
        data = b"".join(
            json.dumps({"custom_id": ln.cid, "method": "POST", "url": url, "body": ln.body}).encode() + b"\n"
            for ln in lines
        )
        token = f"{self.journal.session}-{uuid.uuid4().hex[:8]}"
        ids = [ln.cid for ln in lines]
        await self.journal.write(kind="submit", token=token, url=url, ids=ids)
        try:
            upload = await self.client.files.create(
                file=(f"instructflow-{self.journal.session}.jsonl", data, "application/jsonl"), purpose="batch"
            )
            batch = await self.client.batches.create(
                input_file_id=upload.id, endpoint=url, completion_window=COMPLETION_WINDOW,  # type: ignore[arg-type]
                metadata={"instructflow_submission": token},
            )
        except openai.NotFoundError as exc:
            message = (f"the teacher at {self.client.base_url} has no Batch API ({exc.status_code} for "
                       f"{exc.request.url.path}); use teacher.mode: sync with this server")
            await self._hand_out([(ln.cid, LineResult(None, code="no_batch_api", message=message)) for ln in lines],
                                 used=False)
            return
        except openai.APIStatusError as exc:  # e.g. 429: the queue of enqueued tokens is full
            await self._hand_out([(ln.cid, LineResult(exc.status_code, error=exc)) for ln in lines], used=False)
            return
        except (openai.APIConnectionError, TimeoutError) as exc:
            failure = LineResult(None, code="connection", message=f"creating a batch: {exc}"[:300], retryable=True)
            await self._hand_out([(ln.cid, failure) for ln in lines], used=False)
            return
        await self.journal.write(kind="batch", token=token, batch=batch.id)
        self._members[batch.id] = ids
        for ln in lines:
            ln.batches += 1
            self._where[ln.cid] = batch.id
        self.stats.batches += 1
        self.stats.lines += len(lines)
        self._follow(batch.id)

    async def _find(self, token: str) -> str | None:
        """The batch a killed process created for submission `token` (listed newest first), or None
        when it never got that far; its lines are then sent afresh."""
        ids = self._submitted.pop(token)
        since = self._submitted_at.get(token, 0.0) - 3600  # created after the submit record (clocks differ)
        found = None
        try:
            async for batch in self.client.batches.list(limit=100):
                if (batch.metadata or {}).get("instructflow_submission") == token:
                    found = batch.id
                    break
                if batch.created_at < since:
                    break
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            log.warning("could not list batches to find submission %s (its lines are sent again): %s", token, exc)
        if found is not None:
            await self.journal.write(kind="batch", token=token, batch=found)
            self._members[found] = ids
        for cid in ids:
            if self._where.get(cid) == token:
                if found is None:
                    del self._where[cid]
                else:
                    self._where[cid] = found
        return found

    def _resend(self, line: _Line, status: str) -> None:
        """A line its batch never ran: into the next batch, or failed after `max_batch_attempts`."""
        if line.batches < self.settings.max_batch_attempts:
            self.stats.resent += 1
            self._enqueue(line)
            return
        self.stats.gave_up += 1
        message = f"no batch ran this request in {line.batches} batch(es) (the last one {status})"
        failure = LineResult(None, code=f"batch_{status}", message=message)
        waiter = self._waiting.get(line.cid)
        if waiter is not None and not waiter.done():
            waiter.set_result(failure)

    # -- waiting for batches --------------------------------------------------------------------
    def _follow(self, batch: str) -> None:
        self._watch.add(batch)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_loop())

    async def _poll_loop(self) -> None:
        while self._watch:
            await asyncio.sleep(self.settings.poll_interval_s)
            for batch in list(self._watch):
                if not any(cid in self._waiting for cid in self._members.get(batch, ())):
                    self._watch.discard(batch)  # nobody here waits for it any more
                    continue
                try:
                    await self._poll(batch)
                except Exception as exc:  # noqa: BLE001 - API, network or disk: tried again at the next poll
                    self.stats.poll_errors += 1
                    log.warning("looking up batch %s failed (tried again in %g s): %r",
                                batch, self.settings.poll_interval_s, exc)

    async def _poll(self, batch: str) -> None:
        try:
            found = await self.client.batches.retrieve(batch)
        except openai.NotFoundError:
            await self._end(batch, "failed", None, None)  # gone: its lines never ran for us
            return
        except openai.APIStatusError as exc:
            if exc.status_code not in (401, 403):
                raise
            # A key that no longer works fails every caller of this batch the way a sync call would.
            await self._hand_out([(cid, LineResult(exc.status_code, error=exc)) for cid in self._members[batch]],
                                 used=False)
            self._watch.discard(batch)
            return
        if found.status in ENDED:
            await self._end(batch, found.status, found.output_file_id, found.error_file_id)

    async def _end(self, batch: str, status: str, output_id: str | None, errors_id: str | None) -> None:
        """Downloads what an ended batch brought back, records it, and serves or resends its lines."""
        files: dict[str, str] = {}
        blobs: list[bytes] = []
        for kind, file_id in (("output", output_id), ("errors", errors_id)):
            if file_id:
                blob = (await self.client.files.content(file_id)).content
                files[kind] = f"{batch}.{kind}.jsonl"
                await self.journal.save(files[kind], blob)
                blobs.append(blob)
        await self.journal.write(kind="end", batch=batch, status=status, **files)
        self._ended[batch] = {"status": status, **files}
        self._watch.discard(batch)
        if status != "completed":
            setattr(self.stats, status, getattr(self.stats, status) + 1)
        results = self._results[batch] = self._parse(blobs, count=True)
        served, unfinished = [], []
        for cid in self._members.get(batch, []):
            line = self._lines.get(cid)
            if line is None or self._where.get(cid) != batch:
                continue  # nobody here waits for it, or it is already in a newer batch
            if cid in results:
                served.append((cid, results.pop(cid)))
            else:
                unfinished.append(line)
        await self._hand_out(served)
        for line in unfinished:
            self._resend(line, status)

    async def _batch_results(self, batch: str) -> dict[str, LineResult]:
        """The results of an ended batch not handed out yet, read from its downloaded files once."""
        if batch not in self._results:
            record = self._ended[batch]
            blobs = [await self.journal.load(record[kind]) for kind in ("output", "errors") if record.get(kind)]
            self._results[batch] = {cid: r for cid, r in self._parse(blobs).items() if cid not in self._used}
        return self._results[batch]

    def _parse(self, blobs: list[bytes], count: bool = False) -> dict[str, LineResult]:
        """custom_id -> result of every line that ran; lines that never ran are left out."""
        results: dict[str, LineResult] = {}
        for blob in blobs:
            for raw in blob.splitlines():
                try:
                    line = json.loads(raw)
                    cid, response = line["custom_id"], line.get("response")
                except (ValueError, KeyError, TypeError):
                    continue  # not a line of ours: its caller is served by a resend
                if not isinstance(response, dict) or not isinstance(response.get("status_code"), int):
                    continue  # never ran (batch_expired, batch_cancelled, ...)
                results[cid] = self._result(response["status_code"], response.get("body"))
                if count and results[cid].status != 200:
                    self.stats.line_errors += 1
        return results

    def _result(self, status: int, body: Any) -> LineResult:
        if status == 200:
            return LineResult(200, body=body)
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        message = error.get("message") if isinstance(error.get("message"), str) else f"batch line failed with {status}"
        request = httpx.Request("POST", f"{self.client.base_url}batches")
        exc = openai.APIStatusError(message, response=httpx.Response(status, request=request), body=error)
        return LineResult(status, error=exc)

    async def _hand_out(self, pairs: list[tuple[str, LineResult]], used: bool = True) -> None:
        """Gives waiting callers their results; used ones are recorded first, so that no result is
        handed out twice, even across a restart."""
        pairs = [(cid, r) for cid, r in pairs if cid in self._waiting and not self._waiting[cid].done()]
        if not pairs:
            return
        if used:
            ids = [cid for cid, _ in pairs]
            await self.journal.write(kind="used", ids=ids)
            self._used.update(ids)
        for cid, result in pairs:
            waiter = self._waiting.get(cid)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)
