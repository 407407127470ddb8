"""`instructflow init`: a commented run config for the user's own teacher.

Asks (on a terminal) or takes flags for the teacher -- OpenAI, a vLLM, Ollama or LiteLLM server (or
any OpenAI-compatible URL), or the embedded model -- probes it (`/models`, one tiny chat call),
and writes a config with the chosen categories and counts, a concurrency that suits that kind of
server, and the NAME of the key's environment variable (never the key).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from instructflow.cluster.probe import Probe, probe


@dataclass(frozen=True)
class ServerKind:
    """Defaults for one kind of teacher server."""

    base_url: str | None
    api_key_env: str | None
    model: str | None
    max_in_flight: int  # teacher.limits.max_in_flight: what the server takes at once
    concurrency: int  # calls in flight per category replica
    why: str  # the comment written next to max_in_flight


KINDS: dict[str, ServerKind] = {
    "openai": ServerKind("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini", 32, 8,
                         "OpenAI's rate limits, not its capacity, bound you: set requests_per_minute/"
                         "tokens_per_minute to your tier's; 429s halve this on their own"),
    "vllm": ServerKind("http://127.0.0.1:8000/v1", None, None, 64, 16,
                       "vLLM batches concurrent requests: more in flight means more throughput, up to "
                       "its --max-num-seqs (256 by default)"),
    "ollama": ServerKind("http://127.0.0.1:11434/v1", None, None, 4, 2,
                         "Ollama answers OLLAMA_NUM_PARALLEL requests at once (4 by default) and queues "
                         "the rest"),
    "litellm": ServerKind("http://127.0.0.1:4000/v1", "LITELLM_API_KEY", None, 32, 8,
                          "a LiteLLM proxy forwards to its backends: match their combined capacity"),
    "url": ServerKind(None, None, None, 16, 4,
                      "a server of unknown capacity: raise this while it keeps up, lower it on timeouts"),
    "embedded": ServerKind(None, None, "smollm2-135m", 2, 1,
                           "the embedded server has two decoding slots"),
}


class InitError(ValueError):
    """What init cannot do with the answers it was given; the message says what to pass."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", choices=sorted(KINDS), help="kind of teacher server")
    p.add_argument("--base-url", help="the server's OpenAI-compatible base URL (ends in /v1)")
    p.add_argument("--model", help="model name as the server lists it")
    p.add_argument("--api-key-env", help="NAME of the environment variable holding the key ('none': no key)")
    p.add_argument("--category", action="append", default=[], metavar="NAME=COUNT",
                   help="a category and its row count (repeat; default general=100)")
    p.add_argument("--output-dir", default=None, help="where the run writes (default out/<config name>)")
    p.add_argument("--config", default="instructflow.yaml", help="the config file to write")
    p.add_argument("--yes", "-y", action="store_true", help="ask nothing: defaults for what no flag gives")
    p.add_argument("--no-probe", action="store_true", help="write the config without asking the server")
    p.add_argument("--force", action="store_true", help="overwrite an existing config file")


def _ask(question: str, default: str | None, interactive: bool) -> str | None:
    if not interactive:
        return default
    shown = f" [{default}]" if default else ""
    answer = input(f"{question}{shown}: ").strip()
    return answer or default


def _categories(pairs: list[str]) -> dict[str, int]:
    import instructflow.instructors.categories  # noqa: F401  (registers every category)
    from instructflow.instructors.registry import categories

    known = categories()
    chosen: dict[str, int] = {}
    for pair in pairs:
        for item in (p.strip() for p in pair.split(",") if p.strip()):
            name, _, count = item.partition("=")
            if name not in known:
                raise InitError(f"unknown category {name!r}; `instructflow categories` lists them")
            if not count.isdigit() or int(count) < 1:
                raise InitError(f"--category {item!r}: give NAME=COUNT with a positive count")
            chosen[name] = int(count)
    return chosen


@dataclass
class Answers:
    kind: str
    base_url: str | None
    model: str | None
    api_key_env: str | None
    categories: dict[str, int]
    output_dir: str


def gather(args: argparse.Namespace, interactive: bool) -> Answers:
    """The answers from the flags, asking on a terminal for what they leave open."""
    kind = args.teacher or _ask(f"teacher ({', '.join(KINDS)})", "openai", interactive) or "openai"
    if kind not in KINDS:
        raise InitError(f"unknown teacher kind {kind!r}; one of {', '.join(KINDS)}")
    d = KINDS[kind]
    base_url = None
    if kind != "embedded":
        base_url = args.base_url or _ask("base URL", d.base_url, interactive)
        if not base_url:
            raise InitError("--teacher url needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    key_env = args.api_key_env or (None if kind == "embedded" else _ask(
        "NAME of the API key's environment variable ('none': no key)", d.api_key_env or "none", interactive))
    if key_env and key_env.lower() == "none":
        key_env = None
    if key_env and not key_env.replace("_", "").isalnum():
        raise InitError(f"--api-key-env {key_env!r}: give the NAME of a variable (e.g. OPENAI_API_KEY), not a key")
    pairs = args.category or [_ask("categories as NAME=COUNT, comma-separated", "general=100", interactive) or ""]
    categories = _categories(pairs) or {"general": 100}
    name = Path(args.config).stem
    output_dir = args.output_dir or _ask("output directory", f"out/{name}", interactive) or f"out/{name}"
    return Answers(kind, base_url, args.model or d.model, key_env, categories, output_dir)


def choose_model(answers: Answers, found: Probe, interactive: bool) -> str:
    """The model to use: the one asked for, else the server's only one, else one picked from its list."""
    if answers.model:
        return answers.model
    if len(found.models) == 1:
        return found.models[0]
    if not found.models:
        raise InitError(f"{found.base_url}/models lists no model; pass --model")
    if interactive:
        for i, name in enumerate(found.models, 1):
            print(f"  {i}. {name}")
        pick = _ask("model (number or name)", "1", True) or "1"
        return found.models[int(pick) - 1] if pick.isdigit() and 0 < int(pick) <= len(found.models) else pick
    raise InitError(f"{found.base_url} serves several models ({', '.join(found.models[:10])}); pass --model")


def render(answers: Answers) -> str:
    """The config file's text: every choice commented, the key only by its variable's name."""
    d = KINDS[answers.kind]
    yaml_kind = "embedded" if answers.kind == "embedded" else "openai"
    lines = [
        f"# instructflow run config written by `instructflow init` for a {answers.kind} teacher.",
        "# Every key and its default: config/reference.yaml. Check it: instructflow doctor --config THIS_FILE",
        "run:",
        f"  output_dir: {answers.output_dir}   # Parquet parts, manifest.jsonl, instructions.jsonl; a rerun resumes",
        "",
        "teacher:",
        f"  kind: {yaml_kind}",
    ]
    if yaml_kind == "openai":
        lines.append(f"  base_url: {answers.base_url}")
    lines.append(f"  model: {answers.model}")
    if yaml_kind == "openai":
        if answers.api_key_env:
            lines.append(f"  api_key_env: {answers.api_key_env}   # the variable's NAME; export it, the key never goes here")
        else:
            lines.append("  api_key_env: null   # the server takes no key")
    lines += [
        "  limits:",
        f"    max_in_flight: {d.max_in_flight}   # {d.why}",
    ]
    if answers.kind == "openai":
        lines += ["  budget:",
                  "    max_cost_usd: null    # a hard cap in dollars (needs prices below)",
                  "    prices: {}            # e.g. gpt-4o-mini: {prompt_per_1k: 0.00015, completion_per_1k: 0.0006}"]
    lines += [
        "",
        "topics:",
        "  file: topics.txt   # next to this file; generated with the teacher on the first run if missing",
        "",
        "categories:   # `instructflow categories` lists them; docs/categories.md has their options",
    ]
    for name, count in answers.categories.items():
        lines += [f"  {name}:", f"    count: {count}   # accepted rows wanted",
                  f"    concurrency: {d.concurrency}   # teacher calls in flight per replica"]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str, force: bool) -> None:
    """Writes the config after checking that it loads (the same checks `generate` makes first)."""
    from instructflow.config import load_config

    if path.exists() and not force:
        raise InitError(f"{path} exists; pass --force to overwrite it, or --config to name another file")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    try:
        load_config(temp)
    except Exception:
        temp.unlink()
        raise
    os.replace(temp, path)


def run(args: argparse.Namespace) -> int:
    """`instructflow init`; returns the exit code."""
    interactive = sys.stdin.isatty() and not args.yes
    try:
        answers = gather(args, interactive)
        if Path(args.config).exists() and not args.force:  # before any paid call
            raise InitError(f"{args.config} exists; pass --force to overwrite it, or --config to name another file")
        if answers.kind != "embedded" and not args.no_probe:
            if answers.api_key_env and not os.environ.get(answers.api_key_env):
                raise InitError(f"{answers.api_key_env} is not set: export it with your key first "
                                "(or pass --no-probe to write the config without asking the server)")
            found = probe(answers.base_url or "", None, answers.api_key_env)
            if found.error is None:
                answers.model = choose_model(answers, found, interactive)
                found = probe(answers.base_url or "", answers.model, answers.api_key_env)
            if found.error:
                raise InitError(f"{found.error} (pass --no-probe to write the config anyway)")
            listed = "listed" if found.listed else "not in /models, but it answered"
            print(f"teacher   {answers.base_url}: {len(found.models)} model(s); {answers.model} {listed}; "
                  f"a 4-token chat call took {found.latency_s:.2f} s")
        elif not answers.model:
            raise InitError("pass --model (nothing was asked of the server, which would list its models)")
        path = Path(args.config)
        write(path, render(answers), args.force)
    except InitError as exc:
        print(f"instructflow init: {exc}", file=sys.stderr)
        return 2
    total, n = sum(answers.categories.values()), len(answers.categories)
    print(f"wrote     {path} ({total} rows in {n} categor{'y' if n == 1 else 'ies'} -> {answers.output_dir})")
    print(f"next      instructflow doctor --config {path}")
    print(f"          instructflow generate --config {path}")
    return 0
