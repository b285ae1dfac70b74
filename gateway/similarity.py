"""Similarity of two free-text answers, for comparing a student's text with the teacher's.

With the `distill` extra installed it is the cosine of all-MiniLM-L6-v2 sentence
embeddings (the same measure as held-out evaluation), computed in a worker thread. Without
it the gateway still compares, with difflib's ratio, and says so once in its log.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.util
import logging
from typing import Any

log = logging.getLogger("slimgate.similarity")


def embeddings_available() -> bool:
    return importlib.util.find_spec("sentence_transformers") is not None


class TextSimilarity:
    def __init__(self) -> None:
        self._embedder: Any = None
        self._use_embeddings = embeddings_available()
        self._lock = asyncio.Lock()
        if not self._use_embeddings:
            log.warning("sentence-transformers is not installed: free-text answers are "
                        "compared with difflib's ratio, not embeddings")

    def _cosine(self, a: str, b: str) -> float:
        if self._embedder is None:
            from distill.embed import get_embedder

            self._embedder = get_embedder()
        vecs = self._embedder.encode([a, b])
        return float(vecs[0] @ vecs[1])

    async def __call__(self, a: str, b: str) -> float:
        if not self._use_embeddings:
            return difflib.SequenceMatcher(None, a, b).ratio()
        async with self._lock:  # one embedding at a time; the model is not re-entrant
            return await asyncio.to_thread(self._cosine, a, b)
