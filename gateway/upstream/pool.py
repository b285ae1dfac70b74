"""The configured upstreams, with retries and fallbacks around every call.

`Upstreams.complete` and `Upstreams.open_stream` try the requested model, then each of
its `fallbacks` in order; each model gets its own retries with exponential backoff that
honours Retry-After. A stream is retried only until its first chunk has arrived.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from gateway.config import Config, ModelConfig
from gateway.upstream.base import Backend, Endpoint, UpstreamFailure
from gateway.upstream.litellm_backend import LiteLLMBackend
from gateway.upstream.openai_http import OpenAIHTTPBackend

log = logging.getLogger("slimgate.upstream")
T = TypeVar("T")

OnFailure = Callable[[ModelConfig, UpstreamFailure], None]
# One attempt on one model of a chain; the model says how to call it (e.g. its responses mode).
Attempt = Callable[[ModelConfig, Backend], Awaitable[T]]
Opener = Callable[[ModelConfig, Backend], AsyncIterator[dict[str, Any]]]


@dataclass(slots=True)
class Served:
    """Which configured model answered, after retries and fallbacks."""

    model: ModelConfig
    attempts: int


def build_backend(m: ModelConfig, session: aiohttp.ClientSession) -> Backend:
    key = os.environ.get(m.api_key_env) if m.api_key_env else None
    if m.api_key_env and not key:
        log.warning(
            "model '%s': env var %s is not set; calling without a key", m.name, m.api_key_env
        )
    if m.provider == "openai":
        assert m.base_url is not None  # checked by the config
        return OpenAIHTTPBackend(
            m.name,
            m.base_url,
            session,
            upstream_model=m.upstream_model,
            api_key=key,
            timeout_s=m.timeout_s,
            connect_timeout_s=m.connect_timeout_s,
            extra_headers=m.headers,
        )
    return LiteLLMBackend(
        m.name,
        m.provider,
        m.upstream_model,
        base_url=m.base_url,
        api_key=key,
        timeout_s=m.timeout_s,
        extra_headers=m.headers,
        extra_body_fields=m.extra_body_fields,
    )


def backoff_delay(m: ModelConfig, attempt: int, failure: UpstreamFailure) -> float:
    if failure.retry_after is not None:
        return min(failure.retry_after, m.timeout_s)
    base = min(m.backoff_max_s, m.backoff_initial_s * (2**attempt))
    return base * (0.5 + random.random() / 2)  # jitter so replicas do not retry in lockstep


class Upstreams:
    def __init__(
        self,
        config: Config,
        backends: dict[str, Backend],
        on_failure: OnFailure | None = None,
    ) -> None:
        self._config = config
        self._backends = backends
        self._on_failure = on_failure

    def chain(self, model: ModelConfig) -> list[ModelConfig]:
        out = [model]
        for name in model.fallbacks:
            fb = self._config.model(name)
            if fb is not None and fb not in out:
                out.append(fb)
        return out

    async def _with_retries(
        self, models: list[ModelConfig], call: Attempt[T]
    ) -> tuple[T, Served]:
        last: UpstreamFailure | None = None
        attempts = 0
        for m in models:
            backend = self._backends[m.name]
            for attempt in range(m.max_retries + 1):
                attempts += 1
                try:
                    return await call(m, backend), Served(m, attempts)
                except UpstreamFailure as f:
                    last = f
                    if self._on_failure:
                        self._on_failure(m, f)
                    if f.kind == "client":  # the request itself is wrong: no other model
                        last = None  # would fix it (and `last` must not hold its traceback,
                        raise        # which holds this frame: a reference cycle per request)
                    if not f.retryable or attempt == m.max_retries:
                        break
                    await asyncio.sleep(backoff_delay(m, attempt, f))
            log.info("model '%s' failed (%s): %s", m.name, last.kind if last else "?", last)
        assert last is not None
        try:
            raise last
        finally:
            # The raised failure's traceback holds this frame, whose `last` holds the failure:
            # a reference cycle per failed request, freed only by a (full) collection.
            del last

    async def complete(
        self, model: ModelConfig, endpoint: Endpoint, body: dict[str, Any]
    ) -> tuple[dict[str, Any], Served]:
        return await self._with_retries(
            self.chain(model), lambda _m, b: b.complete(endpoint, body)
        )

    async def call(self, model: ModelConfig, attempt: Attempt[T]) -> tuple[T, Served]:
        """`attempt` on the model's chain, with retries: for calls that differ per model."""
        return await self._with_retries(self.chain(model), attempt)

    async def open_stream(
        self, model: ModelConfig, endpoint: Endpoint, body: dict[str, Any]
    ) -> tuple[AsyncIterator[dict[str, Any]], Served]:
        """Start a stream; returns once the first chunk is in hand."""
        return await self.open_stream_with(model, lambda _m, b: b.stream(endpoint, body))

    async def open_stream_with(
        self, model: ModelConfig, opener: Opener
    ) -> tuple[AsyncIterator[dict[str, Any]], Served]:
        """Like `open_stream`, with the stream each model of the chain is asked for."""

        async def first_chunk(
            m: ModelConfig, b: Backend
        ) -> tuple[dict[str, Any], AsyncIterator[dict[str, Any]]]:
            it = opener(m, b).__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                raise UpstreamFailure("malformed", "upstream sent an empty stream") from None
            return first, it

        (first, rest), served = await self._with_retries(self.chain(model), first_chunk)

        async def chained() -> AsyncIterator[dict[str, Any]]:
            try:
                yield first
                async for chunk in rest:
                    yield chunk
            finally:
                # A client that hangs up must release the upstream connection now.
                aclose = getattr(rest, "aclose", None)
                if aclose is not None:
                    await aclose()

        return chained(), served

    async def aclose(self) -> None:
        for b in self._backends.values():
            await b.aclose()
