"""Similarity of two free-text answers, for comparing a student's text with the teacher's.

With the `distill` extra installed it is the cosine of all-MiniLM-L6-v2 sentence
embeddings (the same measure as held-out evaluation), computed in a worker thread. Without
it the gateway still compares, with difflib's ratio, and says so once in its log.
"""

from __future__ import annotations

import asyncio
import difflib
import logging

from gateway.embed import SharedEmbedder, embeddings_available

log = logging.getLogger("slimgate.similarity")


class TextSimilarity:
    def __init__(self, embedder: SharedEmbedder) -> None:
        self._embedder = embedder
        self._use_embeddings = embeddings_available()
        self._lock = asyncio.Lock()
        if not self._use_embeddings:
            log.warning("sentence-transformers is not installed: free-text answers are "
                        "compared with difflib's ratio, not embeddings")

    def _cosine(self, a: str, b: str) -> float:
        vecs = self._embedder.encode([a, b])
        return float(vecs[0] @ vecs[1])

    async def __call__(self, a: str, b: str) -> float:
        if not self._use_embeddings:
            return difflib.SequenceMatcher(None, a, b).ratio()
        async with self._lock:  # one embedding at a time; the model is not re-entrant
            return await asyncio.to_thread(self._cosine, a, b)
