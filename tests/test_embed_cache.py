"""The worker's embedder keeps the vectors of texts it embedded: discovery samples the same
requests pass after pass, and only new texts reach the model."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.embed import SharedEmbedder


class _Model:
    """A stand-in for MiniLM: a vector from the text's length and first letter."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str], batch_size: int = 64) -> Any:
        self.seen += texts
        return np.array([[len(t), ord(t[0]) if t else 0, 1.0] for t in texts], dtype=np.float32)


def _embedder(cache_size: int) -> tuple[SharedEmbedder, _Model]:
    shared, model = SharedEmbedder(cache_size=cache_size), _Model()
    shared._model = model  # type: ignore[assignment]
    return shared, model


def test_cached_vectors_equal_computed_ones_and_are_not_computed_again() -> None:
    shared, model = _embedder(100)
    first = shared.encode(["alpha", "beta", "alpha"])
    assert model.seen == ["alpha", "beta"]  # a text twice in one call: embedded once
    again = shared.encode(["beta", "gamma", "alpha"])
    assert model.seen == ["alpha", "beta", "gamma"]
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
    assert again.dtype == np.float32 and again.shape == (3, 3)
    assert shared.computed == 3


def test_the_oldest_vectors_leave_when_the_cache_is_full() -> None:
    shared, model = _embedder(2)
    shared.encode(["a1", "b22"])
    shared.encode(["a1"])  # a1 is now the newest
    shared.encode(["c333"])  # evicts b22
    shared.encode(["a1", "b22"])
    assert model.seen == ["a1", "b22", "c333", "b22"]


def test_without_a_cache_every_call_reaches_the_model() -> None:
    shared, model = _embedder(0)
    shared.encode(["x", "x"])
    shared.encode(["x"])
    assert model.seen == ["x", "x", "x"] and shared.computed == 3
    assert shared.encode([]).shape[0] == 0
