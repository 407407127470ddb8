"""Asking an OpenAI-compatible teacher whether it is there: its model list, then one tiny chat call.

Shared by `instructflow init` (to choose and confirm a model) and `instructflow doctor` (to check a
config's teacher). The key is read from the named environment variable and sent, never shown.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Probe:
    """What one probe found; `error` says why the teacher cannot be used as it is (None: usable)."""

    base_url: str
    models: list[str] = field(default_factory=list)
    listed: bool | None = None  # the asked-for model is in /models (None: not asked, or no listing)
    latency_s: float | None = None  # of the tiny chat call
    reply: str = ""
    error: str | None = None


def _headers(api_key_env: str | None) -> dict[str, str]:
    key = os.environ.get(api_key_env, "") if api_key_env else ""
    return {"Authorization": f"Bearer {key}"} if key else {}


def _why(exc: Exception, url: str) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        hint = {401: " (the key is missing or wrong)", 403: " (the key may not use this model)",
                404: " (wrong base_url? it usually ends in /v1)"}.get(status, "")
        return f"{url} answered HTTP {status}{hint}: {exc.response.text[:200].strip()}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer in time"
    if isinstance(exc, httpx.HTTPError):
        return f"cannot reach {url}: {exc}"
    return f"{url}: {exc}"


def list_models(base_url: str, api_key_env: str | None, timeout_s: float = 10.0) -> list[str]:
    """The model ids `GET {base_url}/models` lists.

    Raises:
        httpx.HTTPError: unreachable, or an error status.
        ValueError: the answer is not an OpenAI model list.
    """
    reply = httpx.get(f"{base_url.rstrip('/')}/models", headers=_headers(api_key_env), timeout=timeout_s)
    reply.raise_for_status()
    data = reply.json().get("data")
    if not isinstance(data, list):
        raise ValueError("the answer to /models has no `data` list: is this an OpenAI-compatible server?")
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]


def key_refused(base_url: str, api_key_env: str, timeout_s: float = 10.0) -> bool:
    """True when `GET {base_url}/models` answers 401 to the key in `api_key_env` (a wrong or revoked
    key); False otherwise: accepted, or the check cannot tell (no such endpoint, unreachable, slow,
    or 403, which a key restricted to some endpoints gets for the model list while it may still
    chat). Costs no tokens, so a run can ask before it starts Ray."""
    try:
        list_models(base_url, api_key_env, timeout_s=timeout_s)
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code == 401
    except (httpx.HTTPError, ValueError):
        return False
    return False


def probe(base_url: str, model: str | None, api_key_env: str | None, timeout_s: float = 30.0) -> Probe:
    """Lists the models, then (with a model) makes one chat call of at most 4 tokens and times it."""
    result = Probe(base_url)
    try:
        result.models = list_models(base_url, api_key_env, timeout_s=min(timeout_s, 10.0))
    except (httpx.HTTPError, ValueError) as exc:
        result.error = _why(exc, f"{base_url.rstrip('/')}/models")
        return result
    if model is None:
        return result
    result.listed = model in result.models if result.models else None
    body = {"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 4, "temperature": 0}
    url = f"{base_url.rstrip('/')}/chat/completions"
    started = time.monotonic()
    try:
        reply = httpx.post(url, json=body, headers=_headers(api_key_env), timeout=timeout_s)
        reply.raise_for_status()
        result.reply = str(reply.json()["choices"][0]["message"]["content"] or "")
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        result.error = _why(exc, url) if isinstance(exc, httpx.HTTPError) else f"{url}: not a chat completion ({exc})"
        return result
    result.latency_s = time.monotonic() - started
    return result
