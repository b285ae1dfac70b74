"""Direct HTTP backend for any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp).

This is the fast path: one pooled aiohttp session for the whole process, the request body
sent as the client wrote it (model name swapped, call options such as `api_base` or
`extra_headers` removed: see `gateway.upstream.params`), SSE parsed line by line. The URL
and headers are the config's; no client header is forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp.http_exceptions import HttpProcessingError

from gateway.upstream.base import (
    MAX_JSON_DEPTH,
    Endpoint,
    UpstreamFailure,
    failure_from_status,
    too_deep,
)
from gateway.upstream.params import direct_body

log = logging.getLogger("slimgate.upstream")

# The events that end a Responses API stream (it has no `[DONE]`).
_RESPONSES_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class OpenAIHTTPBackend:
    def __init__(
        self,
        name: str,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        upstream_model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self._base = base_url.rstrip("/")
        self._session = session
        self._model = upstream_model
        self.headers = {"content-type": "application/json", **(extra_headers or {})}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        # Streams may run long: bound the wait for each chunk, not the whole stream.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=timeout_s
        )
        self._timeout_s = timeout_s

    def payload(self, body: dict[str, Any]) -> dict[str, Any]:
        """What is sent: the client's fields minus call options, with the upstream's model."""
        return {**direct_body(body), "model": self._model}

    def _payload(self, body: dict[str, Any]) -> bytes:
        return orjson.dumps(self.payload(body))

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._base}/{endpoint}"
        try:
            async with self._session.post(
                url, data=self._payload(body), headers=self.headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise failure_from_status(resp.status, raw, resp.headers.get("retry-after"))
        except TimeoutError:
            raise UpstreamFailure("timeout", f"no answer within {self._timeout_s:g}s") from None
        except aiohttp.ClientError as e:
            raise UpstreamFailure("connect", f"connection failed: {type(e).__name__}") from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamFailure("malformed", "upstream answer is not valid JSON") from None
        if not isinstance(data, dict):
            raise UpstreamFailure("malformed", "upstream answer is not a JSON object")
        if too_deep(data):
            raise UpstreamFailure("malformed", f"upstream answer nests deeper than "
                                  f"{MAX_JSON_DEPTH} levels")
        return data

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        url = f"{self._base}/{endpoint}"
        finished = False
        try:
            async with self._session.post(
                url, data=self._payload(body), headers=self.headers, timeout=self._stream_timeout
            ) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    raise failure_from_status(resp.status, raw, resp.headers.get("retry-after"))
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue  # blank separators, comments, `event:` lines
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        return
                    try:
                        chunk = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        raise UpstreamFailure(
                            "malformed", "upstream sent an invalid stream chunk"
                        ) from None
                    if not isinstance(chunk, dict) or too_deep(chunk):
                        raise UpstreamFailure("malformed", "upstream sent a non-object or "
                                              "too deeply nested chunk")
                    if "error" in chunk or chunk.get("type") == "error":
                        # Its text may echo the request: debug log only, like a 5xx body.
                        log.debug("upstream stream error event: %r", payload[:2000])
                        raise UpstreamFailure("server", "upstream sent an error event mid-stream")
                    if chunk.get("type") in _RESPONSES_FINAL or any(
                            c.get("finish_reason") for c in chunk.get("choices") or ()):
                        finished = True
                    yield chunk
        except TimeoutError:
            raise UpstreamFailure("timeout", f"no chunk within {self._timeout_s:g}s") from None
        except aiohttp.ClientError as e:
            raise UpstreamFailure("connect", f"stream broke: {type(e).__name__}") from None
        except (ValueError, HttpProcessingError):  # a line beyond aiohttp's limit (LineTooLong)
            raise UpstreamFailure("malformed", "upstream sent a stream line that is too long"
                                  ) from None
        except asyncio.CancelledError:
            raise
        if not finished:
            raise UpstreamFailure("connect", "upstream closed the stream before it finished")

    async def aclose(self) -> None:
        """The session is shared and owned by the app's lifespan."""
