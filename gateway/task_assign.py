"""Online task assignment on the request path, the way discovery assigns recorded requests.

Every lookup is within the caller's namespace (its tenant, `ServerConfig.task_namespace`): a
request is only ever placed in a task of its own tenant, whatever prompt or tools it sends.
`lookup` (and `assign`) is synchronous and cheap: an explicit tag, else the request's
fingerprint when it belongs to one task, else (a fingerprint split into several tasks) the task
whose instruction templates the request shares most. `search` (and `assign_by_centroid`) runs
on a miss, in a worker thread: a new prompt a word or a date away from a task's takes that
task; a request that no template places inside a group split by answer shape takes the nearest
content centroid (embedding needs the distill extra, sentence-transformers). Nothing heavy is
imported until then. The request path (`RoutingTable.assign`) runs `lookup`, then `search` on
a miss with the key `lookup` computed: one fingerprint per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.embed import embeddings_available
from gateway.fingerprint import (
    fingerprint,
    instruction_units,
    signature,
    system_text,
    unit_hash,
    words_alike,
)
from gateway.task_ids import RULE, is_task_id, scoped_task, task_tenant

_SYSTEM_CACHE_SIZE = 1024
_MISS_CACHE_SIZE = 4096  # fingerprints of new prompts, with the tasks their prompt is alike

How = Literal["explicit", "fingerprint", "template", "prompt", "centroid", "none"]
Key = tuple[str | None, str]  # (namespace, fingerprint): where a request is looked up


class InvalidTaskTag(ValueError):
    """A client's explicit task tag (header or `metadata.task`) that is no valid task name."""


class TaskLike(Protocol):
    id: str
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Assignment:
    task: str | None
    how: How
    similarity: float | None = None  # cosine to the chosen centroid (how == "centroid")


NO_TASK = Assignment(None, "none")


@dataclass(frozen=True, slots=True)
class _Known:
    """What the assigner keeps of one task."""

    id: str
    tenant: str | None  # the namespace whose callers it may take (None: shared, open gateway)
    signature: str
    systems: tuple[str, ...]  # masked system prompts, for new prompts a word away
    templates: frozenset[str]  # unit hashes of its instruction templates (split groups)
    split: str | None  # "instruction" | "answer" | None
    centroid: list[float] | None


def best_template(unit_hashes: Sequence[str], owned: Sequence[set[str] | frozenset[str]]
                  ) -> int | None:
    """Index of the one template set sharing the most units with the request's, None when
    none shares any or two tie. Discovery places rows of a split group by this same rule."""
    present = set(unit_hashes)
    scores = [len(present & s) for s in owned]
    best = max(scores, default=0)
    if best == 0 or scores.count(best) > 1:
        return None
    return scores.index(best)


def explicit_task(body: dict[str, Any], header_task: str | None) -> str | None:
    """The client's own tag: the X-Slimgate-Task header, else `metadata.task`; validated."""
    if header_task is not None:
        return _valid(header_task, "The X-Slimgate-Task header")
    meta = body.get("metadata")
    if isinstance(meta, dict) and "task" in meta:
        tag = meta["task"]
        if not isinstance(tag, str):
            raise InvalidTaskTag(f"metadata.task must be a string, not {type(tag).__name__}.")
        return _valid(tag, "metadata.task")
    return None


def _valid(tag: str, where: str) -> str:
    if not is_task_id(tag):
        raise InvalidTaskTag(f"{where} {tag[:80]!r} is not a valid task name: use {RULE}.")
    return tag


class TaskAssigner:
    """Maps requests to known tasks; build a new one whenever the task table changes."""

    def __init__(
        self,
        known: list[_Known],
        *,
        embedder: Callable[[], Any] | None = None,
    ) -> None:
        self._known = {k.id: k for k in known}
        self._by_fingerprint: dict[Key, list[str]] = defaultdict(list)
        self._centroid_ids = [k.id for k in known if k.centroid]
        self._embedder_factory = embedder  # () -> an Embedder; none: no centroid assignment
        self._embedder: Any = None
        self._matrix: Any = None
        self._system_cache: dict[str, Any] = {}
        self._miss_cache: dict[Key, list[str]] = {}
        self._lock = threading.Lock()
        self._installed: bool | None = None

    @classmethod
    def from_tasks(cls, tasks: Iterable[TaskLike], **kwargs: Any) -> TaskAssigner:
        """From task records' info: fingerprints, signature, systems, templates, split, centroid."""
        known, fps = [], []
        for t in tasks:
            info = t.info
            known.append(_Known(
                t.id, task_tenant(info), str(info.get("signature", "")),
                tuple(info.get("systems") or ()),
                frozenset(info.get("templates") or ()), info.get("split"),
                info.get("centroid") or None))
            fps.append((t.id, task_tenant(info), info.get("fingerprints") or []))
        assigner = cls(known, **kwargs)
        for task_id, tenant, prints in fps:
            for fp in prints:
                assigner._by_fingerprint[tenant, fp].append(task_id)
        return assigner

    def assign(self, body: dict[str, Any], header_task: str | None = None,
               namespace: str | None = None) -> Assignment:
        """Explicit tag (stored as the caller's own: `<namespace>.<name>`), else a
        fingerprint of one of the namespace's tasks, else the template that places the
        request among its tasks sharing that fingerprint, else no task (yet).

        Raises InvalidTaskTag (a ValueError) for an invalid explicit tag (the client should
        get a 400).
        """
        return self.lookup(body, header_task, namespace)[0]

    def lookup(self, body: dict[str, Any], header_task: str | None,
               namespace: str | None) -> tuple[Assignment, Key | None]:
        """`assign`, with the key the request was looked up by (None for an explicit tag),
        for `search` on a miss: the fingerprint is computed once per request."""
        tag = explicit_task(body, header_task)
        if tag is not None:
            return Assignment(scoped_task(tag, namespace), "explicit"), None
        key = (namespace, fingerprint(body))
        ids = self._by_fingerprint.get(key)
        if not ids:
            return NO_TASK, key
        if len(ids) == 1:
            return Assignment(ids[0], "fingerprint"), key
        task = self._by_template(body, ids)
        return (Assignment(task, "template") if task else NO_TASK), key

    def _by_template(self, body: dict[str, Any], ids: list[str]) -> str | None:
        units = [unit_hash(u) for u in instruction_units(body)]
        j = best_template(units, [self._known[i].templates for i in ids])
        return ids[j] if j is not None else None

    async def assign_by_centroid(self, body: dict[str, Any],
                                 namespace: str | None = None) -> Assignment:
        """`search` for a request `assign` found no task for."""
        return await self.search(body, (namespace, fingerprint(body)))

    async def search(self, body: dict[str, Any], key: Key) -> Assignment:
        """On a miss (`key` from `lookup`): a new prompt a word or a date away from a task's
        prompt (same tools and format) takes that task; a request no template places in a
        group split by answer shape takes the nearest content centroid. A group split by
        instruction takes none."""
        namespace = key[0]
        ids = self._by_fingerprint.get(key)
        how: How = "template"
        if not ids:
            if key not in self._miss_cache:
                if len(self._miss_cache) >= _MISS_CACHE_SIZE:
                    self._miss_cache.clear()
                self._miss_cache[key] = await asyncio.to_thread(self._alike_prompt, body,
                                                                namespace)
            ids, how = self._miss_cache[key], "prompt"
            if len(ids) == 1:
                return Assignment(ids[0], how)
            if ids and (task := self._by_template(body, ids)):
                return Assignment(task, how)
        if not ids or any(self._known[i].split == "instruction" for i in ids):
            return NO_TASK
        allowed = [i for i in ids if self._known[i].centroid]
        if not allowed or not self._embeddings_on():  # as discovery without an embedder
            return NO_TASK
        best, sim = await asyncio.to_thread(self._nearest, body, allowed)
        return Assignment(best, "centroid", sim)

    def _alike_prompt(self, body: dict[str, Any], namespace: str | None) -> list[str]:
        """The namespace's tasks with the request's tools and format whose prompt is a word
        or a date away."""
        sig, system = signature(body), system_text(body).split()
        return [k.id for k in self._known.values() if k.tenant == namespace and k.signature == sig
                and any(words_alike(system, s.split()) for s in k.systems)]

    def _embeddings_on(self) -> bool:
        if self._installed is None:
            self._installed = self._embedder_factory is not None and embeddings_available()
        return self._installed

    def _ensure_model(self) -> None:
        """Load the embedder and the centroid matrix (in a worker thread, under the lock)."""
        if self._embedder is None:
            import numpy as np

            if self._embedder_factory is None:
                raise RuntimeError("no embedder given: centroid assignment is off")
            self._embedder = self._embedder_factory()
            self._matrix = np.asarray([self._known[i].centroid for i in self._centroid_ids],
                                      dtype=np.float32)

    async def warm(self) -> None:
        """Load the model ahead of the first miss, off the event loop, where a group is split
        by answer shape (the only place a centroid decides)."""
        if any(k.split == "answer" and k.centroid for k in self._known.values()) \
                and self._embedder_factory is not None and embeddings_available():
            def load() -> None:
                with self._lock:
                    self._ensure_model()

            await asyncio.to_thread(load)

    def _nearest(self, body: dict[str, Any], allowed: list[str]) -> tuple[str, float]:
        """Runs in a worker thread: embed the request's user content, return the task whose
        centroid's content half is nearest, and that cosine."""
        from gateway.embed import normalise, request_vectors

        with self._lock:
            self._ensure_model()
            if len(self._system_cache) > _SYSTEM_CACHE_SIZE:
                self._system_cache.clear()
            vec = request_vectors(self._embedder, [body], system_cache=self._system_cache)[0]
        rows = [self._centroid_ids.index(i) for i in allowed]
        half = len(vec) // 2  # vectors are [system | content] / sqrt(2): compare the content
        sims = normalise(self._matrix[rows][:, half:]) @ normalise(vec[half:])
        j = int(sims.argmax())
        return allowed[j], float(sims[j])
