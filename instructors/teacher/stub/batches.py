"""The stub teacher's Files and Batch API: what `teacher.mode: batch` talks to in tests.

Serves `POST /v1/files` (multipart, purpose ``batch``), `GET /v1/files/{id}/content`,
`POST /v1/batches`, `GET /v1/batches`, `GET /v1/batches/{id}` and `POST /v1/batches/{id}/cancel`.
A batch ends `batch_window_s` seconds after it is created (seconds, not the API's 24 hours); its
lines are answered like synchronous requests (the category and call are read from the custom_id,
``<category>:<call>:...``, since batch lines carry no headers). Fault switches: `batch_expire_next`
(the next N batches expire with only their first half run), `batch_fail_next` (the next N fail
validation: nothing runs), `batch_p_line_error` (that share of lines come back with a 500 in the
error file).

Every line answered with a completion is a paid line: `stats()["paid"]` counts them by custom_id,
and `paid_twice` lists any custom_id paid more than once, which a client must never cause.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from instructflow.instructors.teacher.stub.server import StubTeacher

_EXPIRED = "This request could not be executed before the completion window expired."
_CANCELLED = "This request was not executed because the batch was cancelled."


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "code": None}}, status=status)


class BatchDesk:
    """Files and batches of one stub server (state lives as long as the server)."""

    def __init__(self, stub: StubTeacher) -> None:
        self.stub = stub
        self._lock = threading.Lock()
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.paid: Counter[str] = Counter()
        self.line_status: Counter[int] = Counter()
        self.unrun = 0  # lines of expired, failed or cancelled batches that never ran
        self.tokens = 0
        self._seq = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{file_id}/content", self._content)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_get("/v1/batches/{batch_id}", self._get)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self._cancel)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "batches": len(self.batches),
                "by_end": dict(Counter(b["status"] for b in self.batches.values())),
                "lines_by_status": {str(k): v for k, v in sorted(self.line_status.items())},
                "lines_not_run": self.unrun,
                "paid": sum(self.paid.values()),
                "paid_ids": len(self.paid),
                "paid_twice": sorted(cid for cid, n in self.paid.items() if n > 1),
                "tokens": self.tokens,
            }

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._seq += 1
            return f"{prefix}-stub-{self._seq:06d}"

    def _refused(self, request: web.Request) -> web.Response | None:
        key = self.stub._faults.require_api_key
        if key is not None and request.headers.get("Authorization", "") != f"Bearer {key}":
            return _error(401, "Incorrect API key provided.")
        return None

    # -- files -----------------------------------------------------------------------------------
    def _store(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        meta = {"id": self._next_id("file"), "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        with self._lock:
            self.files[meta["id"]] = (meta, data)
        return meta

    async def _upload(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField) or purpose != "batch":
            return _error(400, "expected a multipart upload with a `file` and purpose=batch")
        return web.json_response(self._store(upload.file.read(), upload.filename, "batch"))

    async def _content(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        found = self.files.get(request.match_info["file_id"])
        if found is None:
            return _error(404, "No such file")
        return web.Response(body=found[1], content_type="application/octet-stream")

    # -- batches ---------------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not valid JSON")
        found = self.files.get(body.get("input_file_id", ""))
        if found is None:
            return _error(400, f"No such file: {body.get('input_file_id')!r}")
        if body.get("endpoint") not in ("/v1/chat/completions", "/v1/completions"):
            return _error(400, f"unsupported endpoint {body.get('endpoint')!r}")
        faults = self.stub._faults
        ending = "completed"
        if faults.batch_fail_next:
            ending = "failed"
            self.stub.set_faults(batch_fail_next=faults.batch_fail_next - 1)
        elif faults.batch_expire_next:
            ending = "expired"
            self.stub.set_faults(batch_expire_next=faults.batch_expire_next - 1)
        lines = found[1].splitlines()
        batch = {
            "id": self._next_id("batch"), "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "in_progress_at": int(time.time()), "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        with self._lock:
            self.batches[batch["id"]] = batch
        asyncio.get_running_loop().call_later(faults.batch_window_s, self._finish, batch["id"], lines, ending)
        return web.json_response(batch)

    async def _list(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        with self._lock:
            data = [dict(b) for b in self.batches.values()]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def _get(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        batch = self.batches.get(request.match_info["batch_id"])
        return _error(404, "No such batch") if batch is None else web.json_response(batch)

    async def _cancel(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return _error(404, "No such batch")
        if batch["status"] == "in_progress":
            self._finish(batch["id"], self.files[batch["input_file_id"]][1].splitlines(), "cancelled")
        return web.json_response(batch)

    # -- running a batch -------------------------------------------------------------------------
    def _finish(self, batch_id: str, lines: list[bytes], ending: str) -> None:
        """Ends a batch: runs the lines its ending allows and writes the output and error files."""
        batch = self.batches[batch_id]
        if batch["status"] != "in_progress":
            return  # cancelled before its window ended
        now = int(time.time())
        if ending == "failed":
            batch.update(status="failed", failed_at=now,
                         errors={"object": "list", "data": [{"code": "injected", "message": "batch_fail_next"}]})
            with self._lock:
                self.unrun += len(lines)
            return
        runs = len(lines) if ending == "completed" else (len(lines) // 2 if ending == "expired" else 0)
        output, errors = [], []
        number = int(batch_id.rsplit("-", 1)[1])
        for i, raw in enumerate(lines):
            request = json.loads(raw)
            if i >= runs:
                code, message = ("batch_expired", _EXPIRED) if ending == "expired" else ("batch_cancelled", _CANCELLED)
                errors.append({"id": f"batch_req_{number}_{i}", "custom_id": request.get("custom_id"), "response": None,
                               "error": {"code": code, "message": message}})
                continue
            status, body = self._answer(request, random.Random(f"{self.stub.seed}:batch:{number}:{i}"))
            entry = {"id": f"batch_req_{number}_{i}", "custom_id": request.get("custom_id"),
                     "response": {"status_code": status, "request_id": f"req_{number}_{i}", "body": body}, "error": None}
            (output if status == 200 else errors).append(entry)
        with self._lock:
            self.unrun += len(lines) - runs
        for kind, entries in (("output_file_id", output), ("error_file_id", errors)):
            if entries:
                blob = "".join(json.dumps(e) + "\n" for e in entries).encode()
                batch[kind] = self._store(blob, f"{batch_id}-{kind}.jsonl", "batch_output")["id"]
        batch["request_counts"].update(completed=len(output), failed=len(errors))
        batch.update(status=ending, **{f"{ending}_at": now})

    def _answer(self, request: dict[str, Any], rng: random.Random) -> tuple[int, dict[str, Any]]:
        """One line, answered the way the synchronous endpoints answer (no transport faults)."""
        body, cid = request.get("body"), str(request.get("custom_id", ""))
        if rng.random() < self.stub._faults.batch_p_line_error:
            status, reply = 500, {"error": {"message": "injected 500", "type": "server_error", "code": None}}
        elif not isinstance(body, dict) or not body.get("model"):
            status, reply = 400, {"error": {"message": "missing required parameter: model", "type": "invalid_request_error", "code": None}}
        else:
            status, reply = 200, self._completion(body, cid, request.get("url", ""), rng)
        with self._lock:
            self.line_status[status] += 1
            if status == 200:
                self.paid[cid] += 1
                self.tokens += reply["usage"]["total_tokens"]
        return status, reply

    def _completion(self, body: dict[str, Any], cid: str, url: str, rng: random.Random) -> dict[str, Any]:
        category, call = (cid.split(":") + ["", ""])[:2]
        chat = url.endswith("/chat/completions")
        prompt = self.stub._prompt_text(body, chat)
        content, _ = self.stub._writer.content(category, call, prompt, rng, wrong_format=False, duplicate=False)
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(content)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": content}
        else:
            choice["text"] = content
        return {"id": f"stub-batch-{cid}", "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": body["model"], "choices": [choice], "usage": usage}


def _tokens(text: str) -> int:
    return math.ceil(len(text.split()) * 1.3)
