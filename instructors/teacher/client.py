"""`TeacherClient`: the `Teacher` protocol on any OpenAI-compatible endpoint.

Built on `openai.AsyncOpenAI` with the SDK's own retries turned off, so that this module holds the
only retry loop. Each attempt goes through the limiter (`acquire` -> HTTP call -> `release`), so
rate limits, the AIMD window and the budget apply to retries too. How each failure is handled:

| failure                                   | retried? | counted as        | ends as                |
|-------------------------------------------|----------|-------------------|------------------------|
| 429 (waits its Retry-After; see limits)   | yes      | rate_limited      | RequestFailed          |
| 5xx, 408, 409                             | yes      | server_error      | RequestFailed          |
| timeout, connection error                 | yes      | timeout/connection| RequestFailed          |
| garbled or truncated JSON body            | yes      | server_error      | RequestFailed          |
| empty choices or empty content            | once     | server_error      | RequestFailed("empty_reply") |
| 400, 404, other 4xx                       | no       | client_error      | RequestFailed          |
| 401, 403                                  | no       | client_error      | FatalTeacherError      |

A reply cut at `max_tokens` is not a failure here: it comes back with `finish_reason` "length"
(`Reply.truncated`) and is counted in `TeacherStats.truncated`; its caller decides (see
`instructors.truncation`).

`x-should-retry: false` stops retrying; `x-should-retry: true` retries even a 4xx (not 401/403).
The API key is read from the environment variable named in the config and never appears in
messages, logs, `repr` or `stats()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import openai

from instructflow.config import TeacherConfig
from instructflow.instructors.teacher.api import (
    CALL_HEADER,
    CATEGORY_HEADER,
    FatalTeacherError,
    Reply,
    RequestFailed,
    TeacherStats,
)
from instructflow.instructors.teacher.batch import BatchCollector, BatchJournal, LineResult
from instructflow.instructors.teacher.limits import RateLimiter
from instructflow.instructors.teacher.retry import Backoff, Clock, retry_hint
from instructflow.instructors.teacher.tokens import (
    UsageLedger,
    estimate_prompt_tokens,
    estimate_tokens,
)

log = logging.getLogger(__name__)

NO_KEY = "sk-no-key-needed"  # sent where the server needs no key (embedded teacher, local servers)
MAX_EMPTY_REPLIES = 2  # an empty reply is retried once, then the request fails


@dataclasses.dataclass
class _Failure:
    reason: str  # RequestFailed.reason and the failures counter key
    outcome: str  # limiter outcome
    detail: str = ""
    status: int | None = None
    retryable: bool = True
    fatal: bool = False
    retry_after_s: float | None = None
    should_retry: bool | None = None
    prompt_tokens: int = 0  # what the server charged for a failed reply (empty replies)
    completion_tokens: int = 0


def _status_class(result: Reply | _Failure) -> str:
    if isinstance(result, Reply) or (result.status is None and result.outcome == "server_error"):
        return "2xx"  # garbled and empty replies came with a 200
    if result.status is None:
        return result.outcome  # "timeout" or "connection"
    return "429" if result.status == 429 else f"{result.status // 100}xx"


class TeacherClient:
    """The teacher for one endpoint and model.

    Args:
        config: `config.TeacherConfig`.
        limiter: anything with `acquire`/`release` (a `RateLimiter`, or `actors.limiter.RemoteLimiter`
            for the cluster-wide gate); None builds a local `RateLimiter` from the config, so the
            budget always applies.
        base_url: overrides `config.base_url` (e.g. the embedded teacher's address).
        observer: called with one dict per attempt (status_class, outcome, latency_s, prompt_tokens,
            completion_tokens, tokens_estimated, category, call, model, attempt, reason); its errors
            are logged and ignored.
        clock / rng: time source and jitter source (virtual time and seeds in tests).
        journal: where batches are recorded (the run's output); with `config.mode` batch, calls go
            through the Batch API (`batch.BatchCollector`); without a journal they stay synchronous.

    Raises:
        FatalTeacherError: the environment variable named by `config.api_key_env` is unset or empty.
    """

    def __init__(
        self,
        config: TeacherConfig,
        limiter: Any = None,
        *,
        base_url: str | None = None,
        observer: Callable[[dict[str, Any]], None] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        journal: BatchJournal | None = None,
    ) -> None:
        self.config = config
        self.base_url = (base_url or config.base_url).rstrip("/")
        self.model = config.model
        self.key_env = None if config.kind == "embedded" else config.api_key_env
        self.clock = clock or Clock()
        self.limiter = limiter if limiter is not None else RateLimiter(config.limits, config.budget, clock=self.clock)
        self.backoff = Backoff(config.backoff_base_s, config.backoff_max_s, rng)
        self.observer = observer
        self.ledger = UsageLedger()
        self._requests: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._retries = 0
        self._replies = 0
        self._truncated = 0  # replies cut at max_tokens
        self._grammars = 0  # requests sent with a grammar (retries not counted again)
        # aiohttp as the SDK's transport (its documented `DefaultAioHttpClient`): about 40% less
        # CPU per request than the default httpx one, which counts at tens of requests a second.
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._read_key(),
            max_retries=0,
            timeout=config.timeout_s,
            http_client=openai.DefaultAioHttpClient(timeout=config.timeout_s),
        )
        use_batches = config.mode == "batch" and journal is not None
        self.batch = BatchCollector(self._client, config.batch, journal) if use_batches else None

    def _read_key(self) -> str:
        if self.key_env is None:
            return NO_KEY
        key = os.environ.get(self.key_env, "").strip()
        if not key:
            raise FatalTeacherError(
                f"environment variable {self.key_env} is not set or empty: export it with the API key "
                f"for {self.base_url} (teacher.api_key_env names the variable; set it to null for a "
                "server that needs no key)"
            )
        return key

    def __repr__(self) -> str:
        return f"TeacherClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.key_env!r})"

    __str__ = __repr__

    async def aclose(self) -> None:
        """Closes the HTTP connection pool (and stops waiting for batches)."""
        if self.batch is not None:
            await self.batch.aclose()
        await self._client.close()

    # -- the Teacher protocol ----------------------------------------------------------------------
    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        category: str,
        call: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        grammar: str | None = None,
    ) -> Reply:
        """Sends one chat completion request with retries; see the module docstring for the rules.
        `grammar` (GBNF) goes in the body field `teacher.grammar_field` when `sends_grammar`.

        Raises:
            RequestFailed: this request failed for good (`reason` says why).
            FatalTeacherError: 401/403; the run must stop.
            BudgetExhausted: from the limiter, before a new attempt starts.
        """
        payload = {"messages": messages, **self._sampling(max_tokens, temperature)}
        if grammar and self.sends_grammar:
            payload[self.config.grammar_field] = grammar
            self._grammars += 1
        return await self._request("chat", payload, estimate_prompt_tokens(messages), category, call)

    async def complete(
        self,
        prompt: str,
        *,
        category: str,
        call: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Reply:
        """The same as `chat` for the plain `/v1/completions` endpoint (raw prompt continuation)."""
        payload = {"prompt": prompt, **self._sampling(max_tokens, temperature)}
        return await self._request("complete", payload, estimate_tokens(prompt), category, call)

    @property
    def sends_grammar(self) -> bool:
        """Whether a call's grammar goes to this server: `teacher.grammar` on, or auto with the
        embedded teacher (llama.cpp reads it; OpenAI-compatible servers may reject an unknown field)."""
        mode = self.config.grammar
        return mode == "on" or (mode == "auto" and self.config.kind == "embedded")

    def _sampling(self, max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
        cfg = self.config
        return {
            "model": self.model,
            "max_tokens": max_tokens or cfg.max_tokens,
            "temperature": cfg.temperature if temperature is None else temperature,
            "top_p": cfg.top_p,
        }

    # -- the retry loop ----------------------------------------------------------------------------
    async def _request(self, kind: str, payload: dict[str, Any], prompt_est: int, category: str, call: str) -> Reply:
        started = self.clock.monotonic()
        est = prompt_est + payload["max_tokens"]
        empties = 0
        attempts = self.config.max_attempts
        for attempt in range(1, attempts + 1):
            result = await self._attempt(kind, payload, est, prompt_est, category, call, attempt)
            self._account(result, category)
            if isinstance(result, Reply):
                return dataclasses.replace(result, latency_s=self.clock.monotonic() - started, attempts=attempt)
            if result.fatal:
                self._failures[result.reason] += 1
                raise FatalTeacherError(result.detail)
            empties += result.reason == "empty_reply"
            if not self._should_retry(result, empties) or attempt == attempts:
                self._failures[result.reason] += 1
                tried = f"after {attempt} attempt(s)"
                raise RequestFailed(result.reason, f"{result.detail} ({tried})" if result.detail else tried)
            self._retries += 1
            await self.clock.sleep(self.backoff.delay(attempt, result.retry_after_s))
        raise AssertionError("unreachable: the loop returns or raises")

    def _account(self, result: Reply | _Failure, category: str) -> None:
        """Counts billed tokens: every reply, and failed replies the server charged for."""
        if isinstance(result, Reply):
            self._replies += 1
            self._truncated += result.truncated
        elif not (result.prompt_tokens or result.completion_tokens):
            return
        self.ledger.add(
            model=getattr(result, "model", self.model),
            category=category,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            estimated=isinstance(result, Reply) and result.tokens_estimated,
        )

    @staticmethod
    def _should_retry(failure: _Failure, empties: int) -> bool:
        if failure.should_retry is not None:
            return failure.should_retry
        if failure.reason == "empty_reply":
            return empties < MAX_EMPTY_REPLIES
        return failure.retryable

    async def _attempt(
        self, kind: str, payload: dict[str, Any], est: int, prompt_est: int, category: str, call: str, attempt: int
    ) -> Reply | _Failure:
        await self.limiter.acquire(est)  # BudgetExhausted propagates: no attempt starts
        t0 = self.clock.monotonic()
        released = False
        try:
            result = await self._send(kind, payload, prompt_est, category, call)
            tokens = (result.prompt_tokens, result.completion_tokens)
            retry_after = result.retry_after_s if isinstance(result, _Failure) else None
            outcome = "ok" if isinstance(result, Reply) else result.outcome
            await self.limiter.release(
                outcome=outcome,
                model=getattr(result, "model", self.model),
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
                retry_after_s=retry_after if outcome == "rate_limited" else None,
                price_factor=self.config.batch.price_factor if self._batched(call) else 1.0,
            )
            released = True
        finally:
            if not released:  # cancelled mid-request: give the slot back even so
                await asyncio.shield(
                    self.limiter.release(outcome="cancelled", model=self.model, prompt_tokens=0, completion_tokens=0)
                )
        self._record(result, self.clock.monotonic() - t0, category, call, attempt)
        return result

    async def _send(self, kind: str, payload: dict[str, Any], prompt_est: int, category: str, call: str) -> Reply | _Failure:
        headers = {CATEGORY_HEADER: category, CALL_HEADER: call}
        # The SDK's documented low-level `post`: its transport, auth, timeouts and status errors,
        # without building typed request and response models. At 64 requests in flight those
        # cost about a fifth of an instructor's CPU, and `_read` checks the reply itself.
        path = "/chat/completions" if kind == "chat" else "/completions"
        if self._batched(call):
            return self._read_line(await self.batch.send(f"/v1{path}", payload, category, call), kind, prompt_est)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                content = await self._client.post(path, body=payload, cast_to=bytes, options={"headers": headers})
            body = json.loads(content)
        except openai.APIStatusError as exc:
            return self._status_failure(exc)
        except (openai.APITimeoutError, TimeoutError):
            return _Failure("timeout", "timeout", f"no reply within {self.config.timeout_s:g} s")
        except openai.APIConnectionError as exc:
            return _Failure("connection", "connection", self._redact(str(exc.__cause__ or exc)))
        except (ValueError, openai.APIResponseValidationError) as exc:  # JSONDecodeError is a ValueError
            return _Failure("garbled_reply", "server_error", f"reply body is not valid JSON: {exc}"[:300])
        return self._read(body, kind, prompt_est)

    def _read(self, body: Any, kind: str, prompt_est: int) -> Reply | _Failure:
        if not isinstance(body, dict) or not isinstance(body.get("choices", []), list):
            return _Failure("garbled_reply", "server_error", f"reply is not a completion: {str(body)[:120]!r}")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
        charged = (_count(usage, "prompt_tokens"), _count(usage, "completion_tokens"))
        choices = body.get("choices") or []
        try:
            text = None
            if choices:
                text = choices[0]["message"]["content"] if kind == "chat" else choices[0]["text"]
        except (KeyError, TypeError):
            return _Failure("garbled_reply", "server_error", "reply has an unreadable `choices` field")
        if text is not None and not isinstance(text, str):
            return _Failure("garbled_reply", "server_error", "reply content is not text")
        if not text or not text.strip():
            what = "no choices" if not choices else "an empty message"
            return _Failure(
                "empty_reply", "server_error", f"server sent {what}", prompt_tokens=charged[0], completion_tokens=charged[1]
            )
        estimated = usage is None or usage.get("prompt_tokens") is None
        if estimated:
            charged = (prompt_est, estimate_tokens(text))
        model = body.get("model") if isinstance(body.get("model"), str) and body.get("model") else self.model
        finish = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
        finish = finish if isinstance(finish, str) else None  # "length": cut at max_tokens
        return Reply(text, charged[0], charged[1], model, tokens_estimated=estimated, finish_reason=finish)

    def _batched(self, call: str) -> bool:
        return self.batch is not None and self.batch.takes(call)

    def _read_line(self, line: LineResult, kind: str, prompt_est: int) -> Reply | _Failure:
        """A batch line's result, read as a synchronous reply with the same status would be."""
        if line.error is not None:
            return self._status_failure(line.error)
        if line.status is None:  # it never ran: its batches expired, failed or were cancelled
            outcome = "connection" if line.code == "connection" else "server_error"
            fatal = line.code == "no_batch_api"  # a server without the Batch API never will have one
            return _Failure(line.code, outcome, line.message, retryable=line.retryable, fatal=fatal)
        return self._read(line.body, kind, prompt_est)

    def _status_failure(self, exc: openai.APIStatusError) -> _Failure:
        code = exc.status_code
        hint = retry_hint(exc.response.headers, now=self.clock.time())
        common = {"status": code, "retry_after_s": hint.delay_s, "should_retry": hint.should_retry}
        if code in (401, 403):
            return _Failure("unauthorized", "client_error", self._auth_message(code, exc), fatal=True, **common)
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body.get("message"), str) else exc.message
        detail = f"HTTP {code}: {self._redact(message)}"[:400]
        if code == 429:
            return _Failure("rate_limited", "rate_limited", detail, **common)
        if code >= 500 or code in (408, 409):
            kind = "timeout" if code == 408 else "server_error"
            return _Failure(kind, kind, detail, **common)
        reason = {400: "bad_request", 404: "not_found", 422: "bad_request"}.get(code, f"http_{code}")
        if code == 404:
            detail += f" (is model {self.model!r} served at {self.base_url}?)"
        return _Failure(reason, "client_error", detail, retryable=False, **common)

    def _auth_message(self, code: int, exc: openai.APIStatusError) -> str:
        # Never echo the server's message here: some servers quote part of the rejected key.
        server_code = f" ({exc.code})" if exc.code and len(str(exc.code)) < 60 else ""
        what = "rejected the API key" if code == 401 else "refused access with this API key"
        if self.key_env is None:
            return (
                f"the teacher at {self.base_url} {what} (HTTP {code}{server_code}); it needs a key: set "
                "teacher.api_key_env to the name of an environment variable that holds it"
            )
        return (
            f"the teacher at {self.base_url} {what} (HTTP {code}{server_code}); check the environment "
            f"variable {self.key_env}" + ("" if code == 401 else f" and that the key may use model {self.model!r}")
        )

    def _redact(self, text: str) -> str:
        key = self._client.api_key if isinstance(self._client.api_key, str) else ""
        return text.replace(key, "***") if len(key) >= 4 else text

    # -- reporting ---------------------------------------------------------------------------------
    def _record(self, result: Reply | _Failure, latency: float, category: str, call: str, attempt: int) -> None:
        status = _status_class(result)
        self._requests[status] += 1
        if self.observer is None:
            return
        event = {
            "status_class": status,
            "outcome": "ok" if isinstance(result, Reply) else result.outcome,
            "reason": None if isinstance(result, Reply) else result.reason,
            "latency_s": latency,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "tokens_estimated": isinstance(result, Reply) and result.tokens_estimated,
            "category": category,
            "call": call,
            "model": getattr(result, "model", self.model),
            "attempt": attempt,
        }
        try:
            self.observer(event)
        except Exception:  # noqa: BLE001 - metrics must never break a request
            log.exception("teacher observer failed")

    def stats(self) -> TeacherStats:
        """Attempts by status class, retries, failed requests by reason, replies and token usage."""
        usage = self.ledger.snapshot()
        return TeacherStats(
            requests=dict(self._requests), retries=self._retries, replies=self._replies, truncated=self._truncated,
            grammar=self._grammars,
            failures=dict(self._failures), prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"], usage=usage,
            batch=self.batch.snapshot() if self.batch is not None else {},
        )


def _count(usage: dict[str, Any] | None, key: str) -> int:
    """A token count from a `usage` object; 0 when absent or not a number."""
    value = (usage or {}).get(key)
    return int(value) if isinstance(value, int | float) and value >= 0 else 0
