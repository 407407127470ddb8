"""The run configuration's typed models; every section rejects unknown keys.

`run_id` is the hash of the effective config; it is written next to the output so that a resumed
run can tell whether it is still the same run. `config.load` turns a YAML file into these models.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from instructflow.config.params import CategoryParams, params_for


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, key and line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Price(_Strict):
    """USD per 1,000 tokens for one model."""

    prompt_per_1k: float = Field(0.0, ge=0)
    completion_per_1k: float = Field(0.0, ge=0)


class Budget(_Strict):
    """Hard spending limits; when one is reached no new request starts."""

    max_tokens_total: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, gt=0)
    prices: dict[str, Price] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cost_needs_prices(self) -> Budget:
        if self.max_cost_usd is not None and not self.prices:
            raise ValueError("max_cost_usd needs per-model prices under `prices`")
        return self


class Limits(_Strict):
    """Cluster-wide limits for one (base_url, model); shared by every actor that uses it."""

    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    max_in_flight: int = Field(32, ge=1, le=4096)
    min_in_flight: int = Field(1, ge=1)  # AIMD never drops the allowed concurrency below this
    # The window halves only when more than this share of a round's replies are 429s; fewer are
    # taken as random 429s, which only delay the request that got them.
    rate_limited_share: float = Field(0.35, gt=0, lt=1)
    round_min_replies: int = Field(20, ge=1, le=10_000)  # a round judges at least this many replies


class Embedded(_Strict):
    """The embedded teacher: a GGUF model from a PyPI package, served by Ray Serve on 127.0.0.1."""

    model: Literal["smollm2-135m"] = "smollm2-135m"
    host: str = "127.0.0.1"
    port: int = Field(8011, ge=1, le=65535)
    parallel: int = Field(2, ge=1, le=16)  # llama.cpp slots
    context: int = Field(4096, ge=256, le=32768)
    threads: int = Field(2, ge=1, le=64)


class TeacherBatch(_Strict):
    """`teacher.mode: batch`: how requests are gathered into OpenAI Batch API jobs (half the price,
    results within the 24 h completion window; docs/teacher-client.md, "Batch mode")."""

    max_requests: int = Field(2000, ge=1, le=50_000)  # lines per batch (the API takes up to 50,000)
    max_wait_s: float = Field(60.0, gt=0, le=86_400)  # a batch leaves once its first line waited this long
    poll_interval_s: float = Field(30.0, gt=0, le=3600)  # how often each awaited batch is looked up
    max_batch_attempts: int = Field(3, ge=1, le=20)  # batches a line may be sent in (expired, failed, cancelled)
    generate: bool = False  # generating calls too (else only answers, judges and calls on a candidate)
    price_factor: float = Field(0.5, gt=0, le=1)  # share of teacher.budget.prices a batched token costs


class TeacherConfig(_Strict):
    """Where requests go and how they are sent."""

    kind: Literal["openai", "embedded"] = "openai"
    mode: Literal["sync", "batch"] = "sync"  # batch: through the Batch API (kind openai only)
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str | None = "OPENAI_API_KEY"  # the *name* of the variable; never the key itself
    temperature: float = Field(0.9, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1, le=65536)
    timeout_s: float = Field(60.0, gt=0, le=3600)
    max_attempts: int = Field(6, ge=1, le=50)
    backoff_base_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=600)
    max_failures_in_a_row: int = Field(20, ge=0, le=100_000)  # per instructor; 0 = never give up
    # GBNF grammars a category declares for a reply (instructors/grammar.py): auto sends them to the
    # embedded teacher only; on sends them to any server in `grammar_field`; off never sends them.
    grammar: Literal["auto", "on", "off"] = "auto"
    grammar_field: str = Field("grammar", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    limits: Limits = Field(default_factory=Limits)
    budget: Budget = Field(default_factory=Budget)
    embedded: Embedded = Field(default_factory=Embedded)
    batch: TeacherBatch = Field(default_factory=TeacherBatch)

    @model_validator(mode="after")
    def _batch_needs_openai(self) -> TeacherConfig:
        if self.mode == "batch" and self.kind == "embedded":
            raise ValueError("mode: batch needs kind: openai (the embedded teacher has no Batch API)")
        return self

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_a_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.replace("_", "").isalnum() or value[0].isdigit()):
            raise ValueError("must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key")
        return value


class Topics(_Strict):
    """Subjects that instructors draw from; generated with the teacher when the file is missing."""

    file: str | None = "topics.txt"  # relative paths are resolved against run.output_dir
    count: int = Field(40, ge=1, le=100_000)
    avoid: list[str] = Field(default_factory=list)


class Characters(_Strict):
    """Character cards the in-character categories draw from: the run's own (written from its
    `character` rows into `<output>/characters/`) plus, when `dir` is set, a folder of the user's."""

    dir: str | None = None  # a folder of YAML/JSON card files; relative to the config file's folder


class Novelty(_Strict):
    """Near-duplicate rejection with sentence embeddings and sharded faiss indexes."""

    model: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"
    threshold: float = Field(0.90, gt=0, le=1)  # cosine similarity at or above which a candidate is a near-duplicate
    shards: int = Field(2, ge=1, le=256)
    embedders: int = Field(1, ge=1, le=256)
    batch_size: int = Field(256, ge=1, le=4096)  # instructions per round trip to the gate
    encode_batch_size: int = Field(32, ge=1, le=4096)  # texts per forward pass of the encoder
    precision: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bfloat16 where computed natively
    torch_threads: int = Field(2, ge=1, le=256)
    nice: int = Field(10, ge=0, le=19)  # how far below normal priority the encoding thread runs
    # On a cluster: a custom resource that only the embedding worker group advertises (the chart
    # uses "novelty"); embedders and shards then ask for it and zero CPUs, so they land only there.
    resource: str | None = None
    gpus_per_embedder: float = Field(0.0, ge=0, le=8)


class Rules(_Strict):
    """Cheap rule filters applied by every judge before any LLM judging."""

    min_instruction_chars: int = Field(10, ge=0)
    max_instruction_chars: int = Field(8000, ge=1)
    min_response_chars: int = Field(1, ge=0)
    max_response_chars: int = Field(20000, ge=1)
    refusals: bool = True  # reject apologies, refusals and "as an AI" disclaimers
    banned_words: list[str] = Field(default_factory=list)
    banned_regexes: list[str] = Field(default_factory=list)

    @field_validator("banned_regexes")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        import re

        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from exc
        return patterns


class LlmJudge(_Strict):
    """LLM-as-judge: a template in prompts/ asks the teacher for a score from 0 to 10."""

    enabled: bool = False
    template: str = "judge"
    conversation_template: str = "judge.conversation"  # for rows of more than one exchange
    threshold: float = Field(6.0, ge=0, le=10)
    max_tokens: int = Field(256, ge=16)


class Judge(_Strict):
    """The judge stage: replicas, the rule filters and the optional LLM judge."""

    replicas: int = Field(1, ge=1, le=256)
    rules: Rules = Field(default_factory=Rules)
    llm: LlmJudge = Field(default_factory=LlmJudge)


PiiEntity = Literal["email", "phone", "credit_card", "iban", "ip_address", "url_secret", "person"]


class Pii(_Strict):
    """PII scrubbing of what goes to the teacher (topics, seed files) and of what is committed
    (instruction and response, in the judge stage, before any LLM judge sees them)."""

    enabled: bool = True
    # person is off by default: instruction data names public figures and fictional people all
    # the time, and the name model is far slower than the pattern entities (docs/pii.md).
    entities: list[PiiEntity] = Field(
        default_factory=lambda: ["email", "phone", "credit_card", "iban", "ip_address", "url_secret"]
    )
    action: Literal["mask", "replace", "drop"] = "mask"
    inputs: bool = True  # scrub topics and seed files before they are sent to the teacher
    before_commit: bool = True  # scrub (or, with drop, reject) rows in the judge stage
    # Regions whose national formats count as phone numbers (+<country code> numbers always do).
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"], min_length=1
    )

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        import phonenumbers

        unknown = sorted(set(regions) - phonenumbers.SUPPORTED_REGIONS)
        if unknown:
            raise ValueError(f"unknown region codes {unknown} (ISO 3166 codes: US, GB, DE, ...)")
        return regions


class Queues(_Strict):
    """Capacities (items) of the bounded queues between stages; puts block when a queue is full."""

    novelty: int = Field(1024, ge=1, le=1_000_000)
    answer: int = Field(256, ge=1, le=1_000_000)
    judge: int = Field(1024, ge=1, le=1_000_000)
    writer: int = Field(2048, ge=1, le=1_000_000)


class Writer(_Strict):
    """How accepted rows are committed: part size, flush interval, rejects and exports."""

    rows_per_part: int = Field(1000, ge=1, le=10_000_000)
    flush_interval_s: float = Field(5.0, gt=0, le=3600)
    keep_rejects: bool = True  # write rejected candidates (with reason) to rejects.jsonl
    exports: list[Literal["jsonl", "sharegpt", "alpaca", "airoboros-2.0", "openai-chat"]] = Field(default_factory=lambda: ["jsonl"])


class Placement(_Strict):
    """On a cluster: the custom resource that each stage's replicas ask for (one unit per replica,
    besides their small CPU share), so that they run only on the nodes that advertise it; null:
    anywhere with CPU to spare. The embedders and shards are placed by `novelty.resource`."""

    instructor: str | None = Field(None, min_length=1)
    judge: str | None = Field(None, min_length=1)
    writer: str | None = Field(None, min_length=1)


class Run(_Strict):
    """Where the run writes, its seed, how long it drains and how it shows progress."""

    output_dir: str = "out/run"
    seed: int = 0
    drain_timeout_s: float = Field(30.0, ge=0, le=3600)
    # Liveness: a category whose counts have not moved for this long while its target is unmet is
    # given up, and the run ends (non-zero exit, everything committed) once every category is settled.
    stall_timeout_s: float = Field(120.0, gt=0, le=86_400)
    # ... and so is one whose last `saturation_window` novelty decisions admitted fewer than
    # `min_novel_share` of the candidates: the teacher keeps repeating itself.
    saturation_window: int = Field(400, ge=10, le=1_000_000)
    min_novel_share: float = Field(0.02, ge=0, le=1)
    display: Literal["auto", "live", "plain", "off"] = "auto"
    prompts_dir: str | None = None  # templates here override the packaged ones of the same name


def _run_problems(typed: dict[str, CategoryParams], sections: dict[str, Any]) -> list[Any]:
    """Checks that need the whole run: each category's own (`CategoryParams.run_problems`), and that
    no category consumes its own rows through a chain of second-round categories."""
    errors: list[Any] = []
    for name, params in typed.items():
        for key, message in params.run_problems(list(typed), sections):
            errors.append({"type": PydanticCustomError("run", message), "loc": (name, key), "input": getattr(params, key)})
    for name, params in typed.items():
        path, todo = [name], [(name, iter(params.consumes()))]
        while todo:  # depth-first along `consumes`, looking for a way back to `name`
            _, rest = todo[-1]
            nxt = next(rest, None)
            if nxt is None:
                todo.pop()
                path.pop()
            elif nxt == name:
                loop = " -> ".join([*path, name])
                errors.append({"type": PydanticCustomError("run", f"consumes its own rows ({loop})"),
                               "loc": (name, "source_categories"), "input": list(params.consumes())})
                break
            elif nxt in typed and nxt not in path:
                path.append(nxt)
                todo.append((nxt, iter(typed[nxt].consumes())))
    return errors


class Config(_Strict):
    """The whole run. `categories` maps a registered category name to its options."""

    run: Run = Field(default_factory=Run)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    topics: Topics = Field(default_factory=Topics)
    characters: Characters = Field(default_factory=Characters)
    novelty: Novelty = Field(default_factory=Novelty)
    judge: Judge = Field(default_factory=Judge)
    pii: Pii = Field(default_factory=Pii)
    queues: Queues = Field(default_factory=Queues)
    writer: Writer = Field(default_factory=Writer)
    placement: Placement = Field(default_factory=Placement)
    categories: dict[str, SerializeAsAny[CategoryParams]]  # each value is its category's own Params
    _source: str = PrivateAttr(default="<string>")

    @property
    def source(self) -> str:
        """The file this config was loaded from (for messages), or "<string>"."""
        return self._source

    @property
    def source_dir(self) -> Path:
        """Relative paths in the config (the topics file) are resolved against this directory."""
        return Path(self._source).resolve().parent if self._source != "<string>" else Path.cwd()

    @field_validator("categories", mode="before")
    @classmethod
    def _typed_categories(cls, raw: Any, info: ValidationInfo) -> dict[str, CategoryParams]:
        if not isinstance(raw, dict) or not raw:
            raise ValueError("needs at least one category, e.g. `general: {count: 100}`")
        typed: dict[str, CategoryParams] = {}
        line_errors: list[Any] = []
        for name, block in raw.items():
            if isinstance(block, CategoryParams):
                typed[name] = block
                continue
            params_type = params_for(name)  # KeyError lists the known categories
            try:
                typed[name] = params_type.model_validate(block or {})
            except ValidationError as exc:  # keep the category name in the reported key path
                for err in exc.errors():
                    line_errors.append(
                        {"type": err["type"], "loc": (name, *err["loc"]), "input": err["input"], "ctx": err.get("ctx", {})}
                    )
        if not line_errors:
            line_errors = _run_problems(typed, info.data)
        if line_errors:
            raise ValidationError.from_exception_data("categories", line_errors)
        return typed

    @property
    def run_id(self) -> str:
        """12-hex-digit hash of the effective config (output_dir, display and placement excluded:
        where a run writes, shows and runs its actors does not change what it produces)."""
        data = self.effective()
        data["run"].pop("output_dir", None)
        data["run"].pop("display", None)
        data.pop("placement", None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def effective(self) -> dict[str, Any]:
        """The config with every default filled in, as plain data (contains no secrets)."""
        data = self.model_dump(mode="json", exclude={"categories"})
        data["categories"] = {k: v.model_dump(mode="json") for k, v in self.categories.items()}
        return data

    def resolve_path(self, value: str) -> Path:
        """A path from the config, relative ones taken from the config file's directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.source_dir / path

    @property
    def prompts_path(self) -> Path | None:
        return self.resolve_path(self.run.prompts_dir) if self.run.prompts_dir else None

    def total_target(self) -> int:
        return sum(p.count for p in self.categories.values())
