"""Online task assignment on the request path: explicit tag, fingerprint, nearest centroid.

`assign` is synchronous and cheap (a regex and a dict lookup on the request's fingerprint);
`assign_by_centroid` embeds the request in a worker thread and is only available where the
distill extra (sentence-transformers) is installed. Nothing heavy is imported until then.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.embed import embeddings_available
from gateway.fingerprint import fingerprint, signature
from gateway.task_ids import RULE, is_task_id

# Cosine between a request and a task centroid ([system | content] / sqrt(2)) needed to take
# the task when the request's fingerprint is new. Measured on the workload: requests whose
# prompt differs only in a brand name score ~0.8 to their task; other tasks' requests 0.15-0.62.
CENTROID_FLOOR = 0.7
# Cosine of the user content alone, among tasks split from one shared prompt (the system part
# is identical there and says nothing). Own task: >= 0.6; an unrelated request: ~0.25.
CONTENT_FLOOR = 0.45
_SYSTEM_CACHE_SIZE = 1024

How = Literal["explicit", "fingerprint", "centroid", "none"]


class TaskLike(Protocol):
    id: str
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Assignment:
    task: str | None
    how: How
    similarity: float | None = None  # cosine to the chosen centroid (how == "centroid")


NO_TASK = Assignment(None, "none")


def explicit_task(body: dict[str, Any], header_task: str | None) -> str | None:
    """The client's own tag: the X-Slimgate-Task header, else `metadata.task`; validated."""
    if header_task is not None:
        return _valid(header_task, "The X-Slimgate-Task header")
    meta = body.get("metadata")
    if isinstance(meta, dict) and "task" in meta:
        tag = meta["task"]
        if not isinstance(tag, str):
            raise ValueError(f"metadata.task must be a string, not {type(tag).__name__}.")
        return _valid(tag, "metadata.task")
    return None


def _valid(tag: str, where: str) -> str:
    if not is_task_id(tag):
        raise ValueError(f"{where} {tag[:80]!r} is not a valid task name: use {RULE}.")
    return tag


class TaskAssigner:
    """Maps requests to known tasks; build a new one whenever the task table changes."""

    def __init__(
        self,
        by_fingerprint: dict[str, list[str]],
        centroids: list[tuple[str, str, list[float]]],  # (task id, signature, vector)
        *,
        floor: float = CENTROID_FLOOR,
        content_floor: float = CONTENT_FLOOR,
        embedder: Callable[[], Any] | None = None,
    ) -> None:
        self._by_fingerprint = by_fingerprint
        self._centroids = centroids
        self._floor = floor
        self._content_floor = content_floor
        self._embedder_factory = embedder  # () -> an Embedder; none: no centroid assignment
        self._embedder: Any = None
        self._matrix: Any = None
        self._system_cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._installed: bool | None = None

    @classmethod
    def from_tasks(cls, tasks: Iterable[TaskLike], **kwargs: Any) -> TaskAssigner:
        """From task records: `info["fingerprints"]`, `info["signature"]`, `info["centroid"]`."""
        by_fp: dict[str, list[str]] = defaultdict(list)
        centroids = []
        for t in tasks:
            for fp in t.info.get("fingerprints") or []:
                by_fp[fp].append(t.id)
            if t.info.get("centroid"):
                centroids.append((t.id, str(t.info.get("signature", "")), t.info["centroid"]))
        return cls(dict(by_fp), centroids, **kwargs)

    def assign(self, body: dict[str, Any], header_task: str | None = None) -> Assignment:
        """Explicit tag, else a fingerprint that belongs to exactly one task, else no task.

        Raises ValueError for an invalid explicit tag (the client should get a 400).
        """
        tag = explicit_task(body, header_task)
        if tag is not None:
            return Assignment(tag, "explicit")
        ids = self._by_fingerprint.get(fingerprint(body))
        if ids and len(ids) == 1:
            return Assignment(ids[0], "fingerprint")
        return NO_TASK

    async def assign_by_centroid(self, body: dict[str, Any]) -> Assignment:
        """The nearest task centroid at or above the floor, among tasks that share the request's
        fingerprint (a split prompt) or else its tools and response format."""
        if not self._centroids:
            return NO_TASK
        if self._installed is None:
            self._installed = self._embedder_factory is not None and embeddings_available()
        if not self._installed:
            return NO_TASK
        ids = self._by_fingerprint.get(fingerprint(body))
        if ids:
            allowed = [i for i, (tid, _, _) in enumerate(self._centroids) if tid in ids]
        else:
            sig = signature(body)
            allowed = [i for i, (_, s, _) in enumerate(self._centroids) if s == sig]
        if not allowed:
            return NO_TASK
        shared = bool(ids)
        best, sim = await asyncio.to_thread(self._nearest, body, allowed, shared)
        if sim < (self._content_floor if shared else self._floor):
            return NO_TASK
        return Assignment(self._centroids[best][0], "centroid", sim)

    def _ensure_model(self) -> None:
        """Load the embedder and the centroid matrix (in a worker thread, under the lock)."""
        if self._embedder is None:
            import numpy as np

            if self._embedder_factory is None:
                raise RuntimeError("no embedder given: centroid assignment is off")
            self._embedder = self._embedder_factory()
            self._matrix = np.asarray([c for _, _, c in self._centroids], dtype=np.float32)

    async def warm(self) -> None:
        """Load the model ahead of the first fingerprint miss, off the event loop."""
        if self._centroids and self._embedder_factory is not None and embeddings_available():
            def load() -> None:
                with self._lock:
                    self._ensure_model()

            await asyncio.to_thread(load)

    def _nearest(
        self, body: dict[str, Any], allowed: list[int], content_only: bool
    ) -> tuple[int, float]:
        """Runs in a worker thread: embed the request, return (centroid index, cosine)."""
        from gateway.embed import normalise, request_vectors

        with self._lock:
            self._ensure_model()
            if len(self._system_cache) > _SYSTEM_CACHE_SIZE:
                self._system_cache.clear()
            vec = request_vectors(self._embedder, [body], system_cache=self._system_cache)[0]
        matrix = self._matrix[allowed]
        if content_only:  # vectors are [system | content] / sqrt(2): compare the content half
            half = len(vec) // 2
            matrix, vec = normalise(matrix[:, half:]), normalise(vec[half:])
        sims = matrix @ vec
        j = int(sims.argmax())
        return allowed[j], float(sims[j])
