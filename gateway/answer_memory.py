"""The answer memory on the request path: the teacher's answer to an exact repeat, served again.

Agents repeat requests. Where a task's teacher answered the same request the same way every
time, the worker remembers that answer (distill/memory.py) and gates the memory like a
student, on its own stages. `AnswerMemory` holds what the store says (stages, entries, read
incrementally on every routing refresh) and answers a lookup with a dictionary read; the
answer is served as student version 0 (`MEMORY_VERSION`), checked against the request's
contract and audited like any student's.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.fingerprint import request_key
from gateway.store.base import Store
from gateway.streams import chunks_from_response
from gateway.upstream.base import Endpoint
from policies.memory import ANSWER_FIELDS, MEMORY_KINDS, request_servable
from policies.stages import CLIENT_STAGES

MEMORY_VERSION = 0  # the student version that stands for the answer memory everywhere
MEMORY_BATCH = 5_000  # entries read per store query on a refresh
PRUNE_EVERY_S = 60.0  # how often answers past the store's retention are forgotten


def memory_key(body: dict[str, Any]) -> str | None:
    """The request's identity for the memory (its request key and the fields that change the
    answer), or None when it cannot be answered from memory."""
    if not request_servable(body):
        return None
    extra = {k: body.get(k) for k in ANSWER_FIELDS if body.get(k) is not None}
    text = request_key(body) + orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MemoryTrack:
    task: str
    stage: str
    step: int


class MemoryAnswer:
    """A remembered answer as a student backend: the chat completion it stands for."""

    name = "memory"

    def __init__(self, message: dict[str, Any], usage: dict[str, Any] | None) -> None:
        self._message, self._usage = message, usage

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        message = dict(self._message)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        resp: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}],
        }
        if self._usage:
            resp["usage"] = dict(self._usage)
        return resp

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[
            dict[str, Any]]:
        for chunk in chunks_from_response(await self.complete(endpoint, body)):
            yield chunk

    async def aclose(self) -> None:
        return None


class AnswerMemory:
    """Every task's memory as the store holds it, kept up to date incrementally."""

    def __init__(self, retention_days: float = 0.0) -> None:
        self._tracks: dict[str, MemoryTrack] = {}
        # task -> key -> (answer JSON, usage JSON, written at): parsed only when served
        self._entries: dict[str, dict[str, tuple[str, str | None, float]]] = {}
        self._seq = 0  # memory_entries read up to here
        self._retention_s = retention_days * 86_400.0  # 0: kept as long as the store keeps them
        self._pruned = 0.0

    @property
    def serving(self) -> bool:
        return any(t.stage in CLIENT_STAGES for t in self._tracks.values())

    def track(self, task: str | None) -> MemoryTrack | None:
        return self._tracks.get(task or "")

    def size(self, task: str) -> int:
        return len(self._entries.get(task, {}))

    async def refresh(self, store: Store) -> None:
        """Read the stages and every entry written since the last refresh."""
        self._tracks = {r["task"]: MemoryTrack(r["task"], r["stage"], int(r["step"] or 0))
                        for r in await store.memory_tracks()}
        while True:
            rows = await store.memory_entries(self._seq, MEMORY_BATCH)
            for r in rows:
                task = self._entries.setdefault(r["task"], {})
                if r["answer"] is None:
                    task.pop(r["key"], None)  # withdrawn: the teacher answered it otherwise
                else:
                    task[r["key"]] = (r["answer"], r["usage"], float(r["created_at"]))
                self._seq = max(self._seq, int(r["seq"]))
            if len(rows) < MEMORY_BATCH:
                break
        for gone in set(self._entries) - set(self._tracks):
            del self._entries[gone]
        self._prune(time.time())

    def _prune(self, now: float) -> None:
        """Forget answers older than the store's retention (the store deletes them too)."""
        if not self._retention_s or now - self._pruned < PRUNE_EVERY_S:
            return
        self._pruned = now
        cutoff = now - self._retention_s
        for entries in self._entries.values():
            for key in [k for k, v in entries.items() if v[2] < cutoff]:
                del entries[key]

    def lookup(self, task: str, kind: str | None, body: dict[str, Any]) -> MemoryAnswer | None:
        """The remembered answer to this exact request in this task, if there is one."""
        if kind not in MEMORY_KINDS:
            return None
        entries = self._entries.get(task)
        if not entries:
            return None
        key = memory_key(body)
        entry = entries.get(key) if key else None
        if entry is None:
            return None
        answer, usage, _ = entry
        return MemoryAnswer(orjson.loads(answer), orjson.loads(usage) if usage else None)
