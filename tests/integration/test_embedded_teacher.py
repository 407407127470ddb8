"""The embedded teacher end to end: SmolLM2 in llama.cpp, on Ray Serve, called with the openai SDK."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import openai
import pytest

from instructflow.instructors.teacher.embedded.llama import EngineRequestError, LlamaEngine

MODEL = "smollm2-135m"
ASK = [{"role": "user", "content": "Name three colours of the rainbow."}]


def _free_port() -> int:
    # Never the default 8011: someone on this shared machine may be running the quickstart there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _settings(**overrides: object) -> SimpleNamespace:
    # One llama thread: with two on a busy 2-core machine, a descheduled thread stalls the other at
    # every barrier, and a 30-token reply can take tens of seconds.
    values = {"model": MODEL, "host": "127.0.0.1", "port": _free_port(), "parallel": 2, "context": 2048, "threads": 1}
    return SimpleNamespace(**{**values, **overrides})


def test_engine_answers_chat_and_completion_and_maps_llama_errors() -> None:
    engine = LlamaEngine(_settings())
    try:

        async def run() -> tuple[dict, dict, dict]:
            # Two at once: both llama.cpp slots decode together and neither blocks the loop.
            return await asyncio.gather(
                engine.chat({"messages": ASK, "max_tokens": 24}),
                engine.completion({"prompt": "The capital of France is", "max_tokens": 8}),
                engine.completion({"prompt": "Counting from one to fifty: one, two, three,", "max_tokens": 6}),
            )

        chat, completion, counting = asyncio.run(run())
        assert chat["object"] == "chat.completion" and chat["model"] == MODEL
        # finish_reason "length" when the reply stopped at max_tokens (what instructflow reads).
        for reply, cap in ((chat, 24), (completion, 8), (counting, 6)):
            finish = reply["choices"][0]["finish_reason"]
            assert finish == "stop" or (finish == "length" and reply["usage"]["completion_tokens"] == cap)
        assert counting["choices"][0]["finish_reason"] == "length"
        assert chat["choices"][0]["message"]["content"].strip()
        assert 0 < chat["usage"]["completion_tokens"] <= 24 and chat["usage"]["prompt_tokens"] > 0
        assert completion["choices"][0]["text"].strip() and completion["usage"]["completion_tokens"] > 0
        with pytest.raises(EngineRequestError) as caught:  # rejected by llama.cpp itself, not by us
            asyncio.run(engine.chat({"messages": ASK, "max_tokens": "many"}))
        assert caught.value.status == 400
    finally:
        engine.close()


@pytest.fixture(scope="module")
def teacher_url(ray_local) -> Iterator[str]:
    """The embedded teacher on the integration tests' shared local Ray."""
    from instructflow.actors.teacher_serve import start_embedded_teacher, stop_embedded_teacher

    yield start_embedded_teacher(_settings(), timeout_s=90)
    stop_embedded_teacher()


@pytest.mark.ray
@pytest.mark.slow
def test_openai_sdk_gets_answers_with_usage_through_ray_serve(teacher_url: str) -> None:
    client = openai.OpenAI(base_url=teacher_url, api_key="unused", max_retries=0, timeout=30)

    chat = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=32)
    assert chat.choices[0].message.content and chat.choices[0].message.content.strip()
    assert chat.usage is not None and chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0

    text = client.completions.create(model=MODEL, prompt="A short poem about the sea:\n", max_tokens=16)
    assert text.choices[0].text.strip()
    assert text.usage is not None and 0 < text.usage.completion_tokens <= 16

    assert [m.id for m in client.models.list().data] == [MODEL]


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "payload"),
    [("/chat/completions", b"{not json"), ("/chat/completions", b'{"messages": "hi"}'), ("/completions", b"{}")],
)
def test_malformed_requests_get_an_openai_style_4xx(teacher_url: str, path: str, payload: bytes) -> None:
    request = urllib.request.Request(
        teacher_url + path, data=payload, headers={"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400
    error = json.loads(caught.value.read())["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


@pytest.mark.ray
@pytest.mark.slow
def test_starting_again_returns_the_running_teacher(teacher_url: str) -> None:
    from instructflow.actors.teacher_serve import start_embedded_teacher

    port = int(teacher_url.rsplit(":", 1)[1].split("/", 1)[0])
    assert start_embedded_teacher(_settings(port=port), timeout_s=5) == teacher_url


@pytest.mark.ray
@pytest.mark.slow
def test_a_second_port_on_the_same_serve_fails_fast_naming_the_running_one(teacher_url: str) -> None:
    from instructflow.actors.teacher_serve import start_embedded_teacher

    running = teacher_url.rsplit(":", 1)[1].split("/", 1)[0]
    with pytest.raises(RuntimeError, match=f"127.0.0.1:{running}"):
        start_embedded_teacher(_settings(), timeout_s=5)


@pytest.mark.ray
@pytest.mark.slow
def test_character_and_rp_end_to_end_with_grammar_shaped_replies(teacher_url: str, tmp_path) -> None:
    # SmolLM2-135M writes no parseable card or scene from the prompts alone (docs/benchmarks.md);
    # with the categories' grammars (teacher.grammar: auto sends them to the embedded teacher) every
    # reply has the shape the parsers read. The run stops the teacher when it drains, so this test
    # comes after the others that share it.
    import pyarrow.parquet as pq
    import yaml

    import instructflow.instructors.categories  # noqa: F401 - registers the categories
    from instructflow.cluster.driver import run
    from instructflow.config import parse_config

    port = int(teacher_url.rsplit(":", 1)[1].split("/", 1)[0])
    data = {
        "run": {"output_dir": str(tmp_path / "out"), "display": "plain", "drain_timeout_s": 20},
        "teacher": {"kind": "embedded", "model": MODEL, "max_tokens": 1024, "timeout_s": 120,
                    "embedded": {"port": port, "parallel": 2, "context": 2048, "threads": 1}},
        "topics": {"file": None},
        "novelty": {"shards": 1, "threshold": 0.99, "torch_threads": 1},
        "categories": {
            "character": {"count": 2, "batch_size": 2, "concurrency": 1},
            "rp": {"count": 1, "batch_size": 1, "concurrency": 1, "min_characters": 2, "max_characters": 2,
                   "min_turns": 2, "max_turns": 2},
        },
    }
    progress = run(parse_config(yaml.safe_dump(data)))
    assert progress.all_done()
    rows = pq.read_table(tmp_path / "out" / "data").to_pylist()
    assert sorted(r["category"] for r in rows) == ["character", "character", "rp"]
    cards = [r for r in rows if r["category"] == "character"]
    assert all(r["response"].startswith("NAME: ") and "STAY IN CHARACTER: " in r["response"] for r in cards)
    assert len(list((tmp_path / "out" / "characters").iterdir())) == 2  # each committed card saved as a file
    (rp,) = [r for r in rows if r["category"] == "rp"]
    roles = [m["role"] for m in rp["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"], roles
    assert rp["skip_prompt_formatting"] and rp["response"] == rp["messages"][2]["content"]


@pytest.mark.ray
@pytest.mark.slow
def test_stopping_the_teacher_shuts_serve_down_without_a_failed_call_on_the_terminal(teacher_url: str, capfd) -> None:
    # Runs last in this module: it stops the teacher the other tests share (stopping is idempotent).
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    from instructflow.actors.teacher_serve import stop_embedded_teacher

    stop_embedded_teacher()
    with pytest.raises(ValueError):  # Serve is gone, controller included, before Ray is shut down
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    # Ray reports a failed actor call on the driver's terminal from a listener thread, within a
    # second of the failure (`serve.shutdown()` alone prints "ServeController.graceful_shutdown
    # failed ... killed by `ray.kill`"); watch the terminal for a bounded while.
    deadline = time.monotonic() + 2
    seen = ""
    while time.monotonic() < deadline:
        out, err = capfd.readouterr()
        seen += out + err
        time.sleep(0.2)
    assert "graceful_shutdown" not in seen and "(raylet)" not in seen, seen
