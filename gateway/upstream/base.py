"""The small protocol every upstream backend speaks, and the failure it raises.

A backend turns an OpenAI-format request body into an OpenAI-format answer: `complete`
returns the whole response as a dict, `stream` yields chat-completion chunks (or, for
`responses`, Responses API events) as dicts.
Failures are `UpstreamFailure`, classified so retries and error mapping need no guessing.
An optional capability is a protocol of its own (`Loadable`), checked with `isinstance`.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

Endpoint = Literal["chat/completions", "completions", "embeddings", "responses"]
FailureKind = Literal[
    "rate_limit",  # 429
    "server",  # 5xx
    "timeout",  # no answer in time
    "connect",  # refused, reset, cut mid-stream
    "auth",  # the provider rejected the gateway's own credentials
    "client",  # the provider rejected the request itself (4xx): the client's to fix
    "malformed",  # the provider's answer was not valid OpenAI JSON
]
log = logging.getLogger("slimgate.upstream")
RETRYABLE: frozenset[str] = frozenset({"rate_limit", "server", "timeout", "connect"})
# JSON nesting accepted from clients and upstreams. orjson reads up to 1024 levels but
# writes only 255, so anything deeper could be read and then neither forwarded nor
# recorded; real requests (tool schemas included) stay far below 64.
MAX_JSON_DEPTH = 128


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` nests dicts/lists deeper than `limit` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


class UpstreamFailure(Exception):
    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.body = body  # the provider's own error envelope, for client errors

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class Backend(Protocol):
    name: str

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]: ...

    def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Loadable(Protocol):
    """A backend that can load its model before a request needs it (an embedded student):
    the routing table starts `load` in the background as soon as a version is routed to."""

    async def load(self) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def failure_from_status(
    status: int, raw: bytes, retry_after: str | None = None
) -> UpstreamFailure:
    """Classify an HTTP error answer from an OpenAI-compatible upstream.

    A 4xx keeps the provider's error envelope (the client's request was at fault, and the
    provider says how). A 5xx or an auth failure keeps only the status: its text may echo
    the request or the provider's internals, so it goes to the debug log, never to the
    client or the store.
    """
    body: dict[str, Any] | None = None
    message = f"upstream answered HTTP {status}"
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    client_fault = 400 <= status < 500 and status not in (401, 403, 408, 429)
    if not client_fault:
        log.debug("upstream HTTP %d body: %r", status, raw[:2000])
    elif isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        body = parsed
        detail = parsed["error"].get("message")
        if isinstance(detail, str) and detail:
            message = f"{message}: {detail[:500]}"
    kind: FailureKind
    if status == 429:
        kind = "rate_limit"
    elif status >= 500 or status == 408:
        kind = "server"
    elif status in (401, 403):
        kind = "auth"
    else:
        kind = "client"
    return UpstreamFailure(
        kind, message, status=status, retry_after=parse_retry_after(retry_after), body=body
    )
