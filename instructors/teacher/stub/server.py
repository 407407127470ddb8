"""The stub teacher: a real OpenAI-compatible HTTP server on 127.0.0.1 with switchable faults.

Every test and benchmark talks to it instead of a paid API. It serves `POST /v1/chat/completions`,
`POST /v1/completions` and `GET /v1/models`, the Files and Batch API (`batches`: a batch ends after
`batch_window_s` seconds), plus `GET /stats` and `POST /control` (change faults while running). Replies are deterministic for a given seed and request order, and parseable by
every instructor: for headers X-Instructflow-Category=C and X-Instructflow-Call=K the content is a
perturbed copy (see `replies`) of prompts/C.K.example.txt, else for K=generate prompts/C.example.txt
(cycled or cut to the N list items the prompt asks for), else for K=judge prompts/judge.example.txt
(K=judge_conversation: prompts/judge.conversation.example.txt first), else for K=topics a numbered list of made-up topics, else a paragraph of 2-5 sentences. A recorded
reply may take names from the prompt (`{{prompt:SPEAKER 1|McCready}}`: the value of the prompt's line
`SPEAKER 1: ...`, else the default), so that role-play transcripts speak with the cast they were given.
A few calls are answered from the prompt itself (`replies.LEARNED`): an `editor` prompt gets its
damaged text back proofread, since no recorded correction could match every source row.
Like a real server it honours the request's `max_tokens`: a longer reply is cut at the cap, with
`finish_reason` "length" and usage counting what was sent; `p_length` makes replies run past the cap
on purpose (for the call kinds in `length_calls`). `p_truncated` is another fault: a broken transfer.

In a test::

    with StubTeacher(seed=1, p_429=0.2, retry_after_s=0.1) as stub:
        client = TeacherClient(config, base_url=stub.base_url)

As a process (benchmarks)::

    python -m instructflow.instructors.teacher.stub --port 8099 --latency 1.0 --max-concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import json
import math
import random
import re
import signal
import threading
import time
from collections import Counter
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from instructflow.instructors.teacher.api import CALL_HEADER, CATEGORY_HEADER
from instructflow.instructors.teacher.stub.batches import BatchDesk
from instructflow.instructors.teacher.stub.replies import ReplyWriter, sentence, split_items
from instructflow.prompts import PROMPTS_DIR

# Probabilistic faults, drawn in this fixed order for every request so that one request's draws
# never depend on which switches are on (determinism for a given seed and request order).
_DRAWS = ("p_429", "p_500", "p_503", "p_hang", "p_truncated", "p_garbled", "p_empty_choices",
          "p_missing_usage", "p_wrong_format", "p_duplicate", "jitter", "wear", "p_length")
_Prob = Field(0.0, ge=0, le=1)


class Faults(BaseModel):
    """Fault switches; every one can be set at construction, on the command line and at run time."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_s: float = Field(0.0, ge=0, description="delay before every reply")
    jitter_s: float = Field(0.0, ge=0, description="extra uniform random delay, 0..jitter_s")
    max_concurrency: int | None = Field(None, ge=1, description="requests beyond this get 429")
    p_429: float = _Prob
    retry_after_s: float = Field(1.0, ge=0, description="sent with every 429")
    retry_after_format: Literal["both", "seconds", "ms", "date", "none"] = "both"
    x_should_retry: Literal["true", "false"] | None = Field(None, description="sent with 429 and 5xx")
    p_500: float = _Prob
    p_503: float = _Prob
    p_hang: float = _Prob
    hang_max_s: float = Field(300.0, gt=0, description="a hung request answers 504 after this")
    p_truncated: float = Field(0.0, ge=0, le=1, description="the HTTP body cut off mid-JSON (a broken transfer)")
    p_garbled: float = _Prob
    p_empty_choices: float = _Prob
    p_missing_usage: float = _Prob
    p_wrong_format: float = _Prob
    p_duplicate: float = _Prob
    p_length: float = Field(
        0.0, ge=0, le=1,
        description="share of replies that run past the request's max_tokens: more of the same (list "
        "items, or sentences) is written and the reply is cut at max_tokens with finish_reason length",
    )
    length_calls: list[str] = Field(
        default_factory=list, description="call kinds p_length applies to (X-Instructflow-Call); empty: all"
    )
    wear: dict[str, int] = Field(
        default_factory=dict,
        description="category -> N: a supply that wears out; the share of that category's generating "
        "replies that repeat an earlier one climbs from 0 to 1 over its first N generating calls",
    )
    fail_first_n: int = Field(0, ge=0, description="the first N requests fail (status below)")
    fail_first_status: Literal[429, 500, 503] = Field(503, description="status of those failures")
    require_api_key: str | None = Field(None, description="401 unless the bearer token equals this")
    batch_window_s: float = Field(1.0, ge=0, description="a batch ends this long after it is created")
    batch_expire_next: int = Field(0, ge=0, description="the next N batches expire with half their lines run")
    batch_fail_next: int = Field(0, ge=0, description="the next N batches fail validation (no line runs)")
    batch_p_line_error: float = Field(0.0, ge=0, le=1, description="share of batch lines answered with a 500")


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": None}}
    return web.json_response(body, status=status, headers=headers)


def _tokens(text: str) -> int:
    return math.ceil(len(text.split()) * 1.3)


def _max_tokens(body: dict[str, Any]) -> int | None:
    """The request's completion-token cap (`max_tokens`, or `max_completion_tokens`), if it set one."""
    cap = body.get("max_tokens", body.get("max_completion_tokens"))
    return cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None


def _cut(text: str, cap: int) -> str:
    """`text` up to its last whole word within `cap` tokens (as `_tokens` counts), layout kept."""
    words = int(cap / 1.3)
    while words and _tokens("w " * words) > cap:
        words -= 1
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    return text[: ends[words - 1]] if words else ""


def _run_on(content: str, cap: int, rng: random.Random) -> str:
    """`content` continued past `cap` tokens: a list (numbered or labelled items) repeats its items,
    other text gains made-up sentences."""
    is_list = split_items(content) is not None
    text = content
    while _tokens(text) <= cap:
        text += f"\n{content}" if is_list else f" {sentence(rng)}"
    return text


class StubTeacher:
    """The stub server. Use as a context manager (background thread with its own event loop), or
    `await start_async()` / `stop_async()` inside a running loop.

    Args:
        port: 0 picks a free port.
        seed: content and fault draws are a function of (seed, request number).
        **faults: any `Faults` field.
    """

    def __init__(self, port: int = 0, seed: int = 0, host: str = "127.0.0.1", **faults: Any) -> None:
        self.host, self.port, self.seed = host, port, seed
        self._faults = Faults(**faults)
        self._lock = threading.Lock()
        self._writer = ReplyWriter(PROMPTS_DIR)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.batches = BatchDesk(self)
        self.reset_stats()

    # -- control ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def faults(self) -> dict[str, Any]:
        return self._faults.model_dump()

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Changes fault switches at run time (validated; unknown names raise ValueError)."""
        try:
            self._faults = Faults.model_validate({**self.faults, **changes})
        except ValidationError as exc:
            raise ValueError(str(exc)) from None
        return self.faults

    def reset_stats(self) -> None:
        """Zeroes the counters (the request numbering, and so the replies, starts over too)."""
        with self._lock:
            self._n = 0
            self._worn: Counter[str] = Counter()  # generating calls per worn category
            self._in_flight = getattr(self, "_in_flight", 0)  # requests still running stay counted
            self._max_seen = self._in_flight
            self._status: Counter[int] = Counter()
            self._injected: Counter[str] = Counter()
            self._prompt_tokens = 0
            self._completion_tokens = 0
            self._grammars = 0  # requests whose body carried a `grammar` (accepted, replies unchanged)
            self._models_asked = 0  # GET /v1/models (free: not in `requests`)

    def stats(self) -> dict[str, Any]:
        """Requests, counts by HTTP status and injected fault, concurrency and tokens served."""
        with self._lock:
            return {
                "requests": self._n,
                "by_status": {str(k): v for k, v in sorted(self._status.items())},
                "faults_injected": dict(self._injected),
                "in_flight": self._in_flight,
                "max_concurrency_seen": self._max_seen,
                "prompt_tokens": self._prompt_tokens,
                "completion_tokens": self._completion_tokens,
                "tokens": self._prompt_tokens + self._completion_tokens,
                "grammar_requests": self._grammars,
                "models_requests": self._models_asked,
                "batch": self.batches.stats(),
            }

    # -- lifecycle -------------------------------------------------------------------------------
    async def start_async(self) -> StubTeacher:
        """Starts serving on the current event loop."""
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/control", self._control)
        self.batches.add_routes(app)
        # handler_cancellation: a client that gives up on a hung request ends its handler too.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> StubTeacher:
        """Starts serving in a background thread; returns once the port is open."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=run, name="stub-teacher", daemon=True)
        self._thread.start()
        if not ready.wait(15):
            raise RuntimeError("stub teacher did not start within 15 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stops the background server (hung requests are cut off)."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
            self._thread = self._loop = None

    def __enter__(self) -> StubTeacher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP handlers ---------------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            self._models_asked += 1
        key = self._faults.require_api_key
        if key is not None and request.headers.get("Authorization", "") != f"Bearer {key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        model = {"id": "stub-teacher", "object": "model", "created": 0, "owned_by": "instructflow"}
        return web.json_response({"object": "list", "data": [model]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _control(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of fault switches")
            faults = self.set_faults(**changes)
        except ValueError as exc:
            return _error(400, str(exc), "invalid_request_error")
        faults["require_api_key"] = "***" if faults["require_api_key"] else None
        return web.json_response(faults)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        faults = self._faults
        with self._lock:
            number = self._n
            self._n += 1
        response = await self._admit(request, faults, number)
        if response is None:
            with self._lock:
                self._in_flight += 1
                self._max_seen = max(self._max_seen, self._in_flight)
            try:
                response = await self._reply(request, faults, number, chat)
            finally:
                with self._lock:
                    self._in_flight -= 1
        with self._lock:
            self._status[response.status] += 1
        return response

    async def _admit(self, request: web.Request, faults: Faults, number: int) -> web.Response | None:
        """The early answers that need no content: auth, forced 503s, the concurrency cap."""
        key = faults.require_api_key
        if key is not None and request.headers.get("Authorization", "") != f"Bearer {key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        if number < faults.fail_first_n:
            status = faults.fail_first_status
            headers = self._retry_headers(faults, status == 429)
            return self._fault("fail_first_n", _error(status, "not ready yet", "server_error", headers))
        if faults.max_concurrency is not None and self._in_flight >= faults.max_concurrency:
            return self._fault("max_concurrency", _error(429, "too many requests in flight", "rate_limit", self._retry_headers(faults, True)))
        return None

    def _count(self, fault: str) -> None:
        with self._lock:
            self._injected[fault] += 1

    def _fault(self, name: str, response: web.Response) -> web.Response:
        self._count(name)
        return response

    def _retry_headers(self, faults: Faults, rate_limited: bool) -> dict[str, str]:
        headers = {"x-should-retry": faults.x_should_retry} if faults.x_should_retry else {}
        if not rate_limited:
            return headers
        fmt, wait = faults.retry_after_format, faults.retry_after_s
        if fmt in ("both", "seconds"):
            headers["Retry-After"] = f"{wait:g}"
        if fmt in ("both", "ms"):
            headers["retry-after-ms"] = str(round(wait * 1000))
        if fmt == "date":
            headers["Retry-After"] = email.utils.formatdate(time.time() + wait, usegmt=True)
        return headers

    async def _reply(self, request: web.Request, faults: Faults, number: int, chat: bool) -> web.StreamResponse:
        rng = random.Random(f"{self.seed}:{number}")
        draws = {name: rng.random() for name in _DRAWS}
        hit = {name: draws[name] < getattr(faults, name) for name in _DRAWS if name not in ("jitter", "wear")}
        category, call = request.headers.get(CATEGORY_HEADER, ""), request.headers.get(CALL_HEADER, "")
        if call == "generate" and category in faults.wear:
            with self._lock:
                self._worn[category] += 1
                used = self._worn[category]
            if draws["wear"] < min(1.0, used / faults.wear[category]):
                hit["p_duplicate"] = True
        for name, status in (("p_429", 429), ("p_500", 500), ("p_503", 503)):
            if hit[name]:
                headers = self._retry_headers(faults, status == 429)
                return self._fault(name, _error(status, f"injected {status}", "server_error", headers))
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict) or not body.get("model"):
            return _error(400, "missing required parameter: model", "invalid_request_error")
        if body.get("grammar") is not None:
            with self._lock:
                self._grammars += 1
        prompt = self._prompt_text(body, chat)
        # Written before sleeping, so the duplicate history follows arrival order (determinism).
        content, kind = self._writer.content(
            category, call, prompt, rng,
            wrong_format=hit["p_wrong_format"], duplicate=hit["p_duplicate"],
        )
        if kind != "example":
            self._count(kind)
        content, finish = self._fit(content, body, call, faults, hit["p_length"], rng)
        await asyncio.sleep(faults.latency_s + draws["jitter"] * faults.jitter_s)
        if hit["p_hang"]:
            self._count("p_hang")
            await asyncio.sleep(faults.hang_max_s)  # cancelled when the client disconnects
            return _error(504, "hung request released", "server_error")
        return self._completion(body, prompt, content, number, chat, hit, rng, finish)

    @staticmethod
    def _prompt_text(body: dict[str, Any], chat: bool) -> str:
        if not chat:
            prompt = body.get("prompt", "")
            return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        messages = body.get("messages") or []
        return "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))

    def _fit(
        self, content: str, body: dict[str, Any], call: str, faults: Faults, long: bool, rng: random.Random
    ) -> tuple[str, str]:
        """The content as a server that honours `max_tokens` sends it, and its finish_reason: cut at
        the cap ("length") when longer. Under `p_length` (for the calls in `length_calls`) the reply
        first runs on past the cap: a list repeats its items, anything else gains sentences."""
        cap = _max_tokens(body)
        if cap is None:
            return content, "stop"
        if long and (not faults.length_calls or call in faults.length_calls):
            self._count("p_length")
            content = _run_on(content, cap, rng)
        if _tokens(content) <= cap:
            return content, "stop"
        return _cut(content, cap), "length"

    def _completion(
        self, body: dict[str, Any], prompt: str, content: str, number: int, chat: bool, hit: dict[str, bool],
        rng: random.Random, finish: str = "stop",
    ) -> web.Response:
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(content)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": content}
        else:
            choice["text"] = content
        reply: dict[str, Any] = {
            "id": f"stub-{self.seed}-{number}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [choice],
            "usage": usage,
        }
        if hit["p_empty_choices"]:
            self._count("p_empty_choices")
            reply["choices"] = []
        if hit["p_missing_usage"]:
            self._count("p_missing_usage")
            del reply["usage"]
        with self._lock:
            self._prompt_tokens += usage["prompt_tokens"]
            self._completion_tokens += usage["completion_tokens"] if reply["choices"] else 0
        text = json.dumps(reply)
        if hit["p_truncated"]:
            self._count("p_truncated")
            text = text[: int(len(text) * rng.uniform(0.1, 0.9))]
        elif hit["p_garbled"]:
            self._count("p_garbled")
            text = "<html><body><h1>502 Bad Gateway</h1>upstream sent garbage</body></html>"
        return web.Response(text=text, content_type="application/json")


# -- command line ------------------------------------------------------------------------------------
def _flag(name: str) -> str:
    return "--" + name.removesuffix("_s").replace("_", "-")


def _wear_flag(text: str) -> dict[str, int]:
    """`--wear trivia=300,general=1000`."""
    try:
        return {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(",") if part.strip())}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CATEGORY=N[,CATEGORY=N...], got {text!r}") from None


def _names_flag(text: str) -> list[str]:
    """`--length-calls respond,judge`."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m instructflow.instructors.teacher.stub",
        description="Run the stub OpenAI-compatible teacher on 127.0.0.1 until interrupted.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed at start)")
    parser.add_argument("--seed", type=int, default=0)
    for name, field in Faults.model_fields.items():
        kind = {float: float, int: int}.get(field.annotation, str)  # type: ignore[call-overload]
        if name in ("max_concurrency", "fail_first_status"):
            kind = int
        if name == "wear":
            kind = _wear_flag
        if name == "length_calls":
            kind = _names_flag
        parser.add_argument(_flag(name), dest=name, type=kind, default=None, help=field.description or name)
    return parser


async def _serve_forever(stub: StubTeacher) -> None:
    await stub.start_async()
    print(f"stub teacher listening on {stub.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stub.stop_async()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; every `Faults` field is a flag (latency_s -> --latency)."""
    args = vars(_parser().parse_args(argv))
    port, seed = args.pop("port"), args.pop("seed")
    faults = {k: v for k, v in args.items() if v is not None}
    asyncio.run(_serve_forever(StubTeacher(port=port, seed=seed, **faults)))

