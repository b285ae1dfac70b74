"""The work behind the OpenAI endpoints: pick the upstream, call it, answer, record.

Route handlers parse and hand over to `Proxy`; `Proxy` knows nothing of HTTP requests
but returns plain dicts or SSE byte iterators. Recording is fire-and-forget through
the `Recorder`; nothing on this path waits for the store.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gateway.config import Config, ModelConfig
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter
from gateway.store.recorder import Exchange, Recorder
from gateway.streams import DONE, sse_event
from gateway.upstream.base import Endpoint, UpstreamFailure
from gateway.upstream.pool import Upstreams


@dataclass(slots=True)
class RequestContext:
    request_id: str
    key_id: str | None
    caller: str  # the rate-limit bucket: key id, or client address on an open gateway
    created_at: float  # wall clock, for the record
    started: float  # perf_counter, for latency
    task: str | None = None


def to_gateway_error(f: UpstreamFailure, model: str) -> GatewayError:
    """Map an upstream failure (after retries and fallbacks) to what the client sees."""
    if f.kind == "client":
        err = (f.body or {}).get("error") or {}
        message = err.get("message") or f.message
        status = f.status if f.status in (400, 404, 409, 413, 422) else 400
        out = InvalidRequest(str(message), param=err.get("param"), code=err.get("code"))
        out.status = status
        return out
    if f.kind == "rate_limit":
        wait = max(1, math.ceil(f.retry_after or 1))
        return RateLimited(
            f"Upstream for model '{model}' is rate limited; retry after {wait}s.",
            headers={"retry-after": str(wait)},
        )
    if f.kind == "timeout":
        return UpstreamTimeout(f"Upstream for model '{model}' timed out: {f.message}.")
    if f.kind == "auth":
        return UpstreamError(
            f"Upstream for model '{model}' rejected the gateway's provider credentials.",
            code="upstream_auth_failed",
        )
    if f.kind == "server" and f.status == 503:
        return UpstreamUnavailable(f"Upstream for model '{model}' is unavailable: {f.message}.")
    return UpstreamError(f"Upstream for model '{model}' failed: {f.message}.", code=f.kind)


def upstream_body(endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
    """The client's body minus slimgate's own extensions."""
    meta = body.get("metadata")
    if endpoint == "chat/completions" and isinstance(meta, dict) and "task" in meta:
        body = dict(body)
        rest = {k: v for k, v in meta.items() if k != "task"}
        if rest:
            body["metadata"] = rest
        else:
            del body["metadata"]
    return body


def _total_tokens(ex: Exchange) -> int:
    usage = (ex.response or {}).get("usage")
    if usage is None and ex.chunks:
        usage = ex.chunks[-1].get("usage")
    return int((usage or {}).get("total_tokens") or 0)


class Proxy:
    def __init__(
        self,
        config: Config,
        upstreams: Upstreams,
        recorder: Recorder,
        metrics: Metrics,
        limiter: RateLimiter,
    ) -> None:
        self._config = config
        self._upstreams = upstreams
        self._recorder = recorder
        self._metrics = metrics
        self._limiter = limiter

    def resolve(self, name: str) -> ModelConfig:
        m = self._config.model(name)
        if m is None:
            raise ModelNotFound(
                f"The model '{name}' does not exist or is not configured on this gateway.",
                param="model",
            )
        return m

    async def _finish(self, ex: Exchange, ctx: RequestContext, status: int) -> None:
        elapsed = time.perf_counter() - ctx.started
        ex.status = status
        ex.latency_ms = elapsed * 1000
        labels = (ex.model, ex.backend, ex.task or "")
        self._metrics.requests.labels(*labels, str(status)).inc()
        self._metrics.latency.labels(*labels).observe(elapsed)
        if self._limiter.tpm:
            self._limiter.charge_tokens(ctx.caller, _total_tokens(ex))
        await self._recorder.submit(ex)

    def _exchange(
        self, endpoint: Endpoint, body: dict[str, Any], ctx: RequestContext, stream: bool
    ) -> Exchange:
        return Exchange(
            request_id=ctx.request_id, created_at=ctx.created_at, endpoint=endpoint,
            model=str(body.get("model")), stream=stream, request=body, key_id=ctx.key_id,
            task=ctx.task,
        )

    async def complete(
        self, endpoint: Endpoint, body: dict[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        model = self.resolve(body["model"])
        ex = self._exchange(endpoint, body, ctx, stream=False)
        try:
            data, served = await self._upstreams.complete(
                model, endpoint, upstream_body(endpoint, body)
            )
        except UpstreamFailure as f:
            err = to_gateway_error(f, model.name)
            ex.error = f.message
            await self._finish(ex, ctx, err.status)
            raise err from None
        ex.upstream, ex.upstream_model = served.model.name, served.model.upstream_model
        ex.response = data
        await self._finish(ex, ctx, 200)
        return data

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any], ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        """Open the upstream stream (errors before the first chunk raise) and relay it."""
        model = self.resolve(body["model"])
        if endpoint == "embeddings":
            raise InvalidRequest("Embeddings cannot be streamed.", param="stream")
        ex = self._exchange(endpoint, body, ctx, stream=True)
        send = upstream_body(endpoint, body)
        opts = send.get("stream_options") or {}
        client_wants_usage = bool(opts.get("include_usage"))
        if not client_wants_usage:
            # Ask for usage anyway so the record has token counts; the extra chunk is
            # not relayed to a client that did not ask for it.
            send = {**send, "stream_options": {**opts, "include_usage": True}}
        try:
            chunks, served = await self._upstreams.open_stream(model, endpoint, send)
        except UpstreamFailure as f:
            err = to_gateway_error(f, model.name)
            ex.error = f.message
            await self._finish(ex, ctx, err.status)
            raise err from None
        ex.upstream, ex.upstream_model = served.model.name, served.model.upstream_model
        ttft = time.perf_counter() - ctx.started
        ex.ttft_ms = ttft * 1000
        self._metrics.ttft.labels(ex.model, ex.backend, ex.task or "").observe(ttft)
        return self._relay(chunks, ex, ctx, client_wants_usage, model.name)

    async def _relay(
        self,
        chunks: AsyncIterator[dict[str, Any]],
        ex: Exchange,
        ctx: RequestContext,
        client_wants_usage: bool,
        model_name: str,
    ) -> AsyncIterator[bytes]:
        seen: list[dict[str, Any]] = []
        ex.chunks = seen
        status = 499  # client went away, unless we get to the end
        try:
            async for chunk in chunks:
                seen.append(chunk)
                if not client_wants_usage and chunk.get("usage") and not chunk.get("choices"):
                    continue
                yield sse_event(chunk)
            status = 200
            # In durable mode the record is committed before the client sees [DONE].
            await self._finish(ex, ctx, status)
            yield DONE
        except UpstreamFailure as f:
            err = to_gateway_error(f, model_name)
            ex.error = f.message
            status = err.status
            yield sse_event(err.envelope())
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            if status != 200:
                if status == 499 and ex.error is None:
                    ex.error = "client closed the connection before the stream ended"
                await self._finish(ex, ctx, status)
