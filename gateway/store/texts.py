"""Static request text stored once: system prompts, tool sets and response formats.

An agent sends the same long system prompt and tool definitions with every call; they are
most of the bytes of its requests. The recorder cuts them out of the request (`cut_static`),
stores each once in `texts` under the hash of its JSON, and keeps `{place: hash}` in the
exchange's `request_texts`. Readers put them back with `restore` — one function, so the
worker, trace export and the API see the request exactly as the client sent it.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import orjson

# Smaller parts stay inline: a reference (a 64-hex hash and its place) and a lookup cost
# about what a one-line prompt such as "You are a helpful assistant." saves. On τ²-bench's
# and AgentDojo's agent requests (bench/recording_bench.py, inspect-evals 0.28.0) every
# static part is far above it: system prompts 474-8,193 bytes, tool sets 2,182-6,007.
MIN_BYTES = 256
STATIC_ROLES = ("system", "developer")
REWRITE_AFTER_S = 3600.0  # a text written this recently is not rewritten (only seen_at moves)


def _place_parts(request: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    for key in ("tools", "functions", "response_format"):
        if request.get(key) is not None:
            yield key, request[key]
    messages = request.get("messages")
    if isinstance(messages, list):
        for i, m in enumerate(messages):
            if isinstance(m, dict) and m.get("role") in STATIC_ROLES and m.get("content"):
                yield f"messages.{i}.content", m["content"]


def cut_static(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request without its large static parts, and those parts as JSON text by place."""
    cut: dict[str, str] = {}
    out = request
    for place, value in list(_place_parts(request)):
        body = orjson.dumps(value).decode()
        if len(body) < MIN_BYTES:
            continue
        if out is request:  # copy on the first cut only; messages shallowly
            out = dict(request)
            if isinstance(request.get("messages"), list):
                out["messages"] = [dict(m) if isinstance(m, dict) else m
                                   for m in request["messages"]]
        _set(out, place, None)
        cut[place] = body
    return out, cut


def text_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _set(request: dict[str, Any], place: str, value: Any) -> None:
    if place.startswith("messages."):
        _, index, _ = place.split(".")
        request["messages"][int(index)]["content"] = value
    elif value is None:
        request.pop(place, None)
    else:
        request[place] = value


def restore(request: dict[str, Any], refs: str | None,
            lookup: Callable[[list[str]], dict[str, str]]) -> dict[str, Any]:
    """The request as sent: each cut part put back from `lookup(hashes) -> {hash: body}`.
    A part whose text is gone (deleted by hand) stays out rather than failing the read."""
    if not refs:
        return request
    places: dict[str, str] = orjson.loads(refs)
    bodies = lookup(sorted(set(places.values())))
    for place, digest in places.items():
        body = bodies.get(digest)
        if body is not None:
            try:
                _set(request, place, orjson.loads(body))
            except (IndexError, KeyError, TypeError, ValueError):
                continue
    return request


class TextLookup:
    """Texts by hash from a synchronous store connection, cached (there are few)."""

    def __init__(self, con: Any, limit: int = 4096) -> None:
        self._con = con
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def __call__(self, hashes: list[str]) -> dict[str, str]:
        missing = [h for h in hashes if h not in self._cache]
        if missing:
            marks = ", ".join("?" for _ in missing)
            for digest, body in self._con.execute(
                    f"SELECT hash, body FROM texts WHERE hash IN ({marks})", missing):
                self._cache[digest] = body
                if len(self._cache) > self._limit:
                    self._cache.popitem(last=False)
        return {h: self._cache[h] for h in hashes if h in self._cache}


class TextWriter:
    """Which texts a recorder must (re)write: new ones, and known ones once an hour so their
    `seen_at` tells retention they are still in use."""

    def __init__(self, limit: int = 10_000) -> None:
        self._written: OrderedDict[str, float] = OrderedDict()
        self._limit = limit

    def rows(self, bodies: dict[str, str], now: float | None = None) -> list[tuple[Any, ...]]:
        now = time.time() if now is None else now
        out = []
        for digest, body in bodies.items():
            last = self._written.get(digest)
            if last is not None and now - last < REWRITE_AFTER_S:
                continue
            out.append((digest, body, now, now))
        return out

    def written(self, rows: Iterable[tuple[Any, ...]]) -> None:
        for row in rows:
            self._written[row[0]] = row[3]
            self._written.move_to_end(row[0])
            if len(self._written) > self._limit:
                self._written.popitem(last=False)
