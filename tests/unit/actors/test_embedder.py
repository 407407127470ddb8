import os
import sys
import threading

import numpy as np
import pytest

from instructflow.actors.core.embedder import (
    Embedder,
    cpu_has_native_bf16,
    encoding_executor,
    resolve_precision,
)

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f amx_tile amx_bf16 amx_int8\n"
SKYLAKE = "flags\t\t: fpu sse2 avx2 avx512f avx512bw\nbugs\t\t: avx512_bf16_is_not_a_flag_here\n"

TEXTS = [
    "Name the largest moon of Saturn.",
    "What is the largest moon of Saturn called?",
    "Write a haiku about autumn rain falling on a tin roof.",
    "Explain how a bloom filter trades memory for false positives, with a worked example.",
    "Which element has the chemical symbol Fe?",
    "Summarise the causes of the French Revolution in three sentences.",
    "Give me a Python function that reverses a linked list in place.",
    "What year did the first person walk on the Moon?",
    "Translate 'good morning' into Japanese.",
    "List five uses of baking soda around the house that most people do not know about.",
    "Who painted the ceiling of the Sistine Chapel?",
    "How many bones are in the adult human body?",
]


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_native_bf16(ZEN4)
    assert cpu_has_native_bf16(SAPPHIRE_RAPIDS)
    assert not cpu_has_native_bf16(SKYLAKE)  # only the flags line counts
    assert not cpu_has_native_bf16("")


def test_auto_precision_picks_bf16_only_where_it_is_native():
    assert resolve_precision("auto", "cpu", ZEN4) == "bfloat16"
    assert resolve_precision("auto", "cpu", SKYLAKE) == "float32"
    assert resolve_precision("float32", "cpu", ZEN4) == "float32"
    assert resolve_precision("bfloat16", "cpu", SKYLAKE) == "bfloat16"


@pytest.fixture(scope="module")
def embedders():
    return Embedder(threads=1, precision="float32"), Embedder(threads=1, precision="bfloat16")


def test_embeddings_are_unit_vectors_of_the_model_size(embedders):
    for embedder in embedders:
        vectors = embedder.encode(TEXTS)
        assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert embedder.encode([]).shape == (0, 384)


def test_bf16_similarities_match_float32(embedders):
    fp32, bf16 = (e.encode(TEXTS) for e in embedders)
    assert [e.precision for e in embedders] == ["float32", "bfloat16"]
    assert not np.array_equal(fp32, bf16)  # bfloat16 really ran
    assert (fp32 * bf16).sum(axis=1).min() > 0.9995
    # What novelty decides on: pairwise cosines move by far less than any threshold step.
    assert np.abs(fp32 @ fp32.T - bf16 @ bf16.T).max() < 5e-3
    assert fp32[0] @ fp32[1] > 0.8 and bf16[0] @ bf16[1] > 0.8  # the paraphrase stays close


def test_forward_pass_size_does_not_change_embeddings(embedders):
    fp32 = embedders[0]
    whole = fp32.encode(TEXTS, batch_size=len(TEXTS))  # one pass, padded to the longest text
    small = fp32.encode(TEXTS, batch_size=3)  # length-sorted passes of 3
    assert np.allclose(whole, small, atol=1e-5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature")
def test_encoding_thread_runs_below_normal_priority():
    def nice_of_this_thread() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = nice_of_this_thread()
    with encoding_executor(5) as pool:
        assert pool.submit(nice_of_this_thread).result() == min(19, base + 5)
    with encoding_executor(0) as pool:
        assert pool.submit(nice_of_this_thread).result() == base
    assert nice_of_this_thread() == base  # the caller's own thread is untouched
