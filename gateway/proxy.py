"""`Proxy`, the loop on the request path: which task, who serves, the call, the record.

The chat completions, completions and embeddings routes (`gateway.openai.routes`) hand a
parsed body to `Proxy.complete` or `Proxy.stream`. The Responses service uses its steps
for a turn's chat form (`resolve`, `admit`, `try_student`, `finish`, `failed`,
`shadow_job`: the `ChatLoop` it declares). `Proxy` knows nothing of HTTP requests but
returns plain dicts or SSE byte iterators. Recording is fire-and-forget through the
`Recorder`; nothing on this path waits for the store.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from gateway.answer_memory import MEMORY_VERSION
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
from gateway.routing import Decision, RoutingTable
from gateway.shadow import Job, ShadowRunner, completion_tokens, first_message
from gateway.store.recorder import Exchange, Recorder
from gateway.streams import DONE, assemble_chat, chunks_from_response, sse_event
from gateway.task_assign import InvalidTaskTag
from gateway.upstream.base import Endpoint, UpstreamFailure
from gateway.upstream.pool import Upstreams
from policies.contract import Violation, check_contract, request_pattern_problem

if TYPE_CHECKING:
    from gateway.telemetry.exporter import SpanExporter

log = logging.getLogger("slimgate.serving")

CLIENT_CLOSED = "client closed the connection before the stream ended"  # recorded as 499


@dataclass(slots=True)
class RequestContext:
    request_id: str
    key_id: str | None
    caller: str  # the rate-limit bucket: key id, or client address on an open gateway
    created_at: float  # wall clock, for the record
    started: float  # perf_counter, for latency
    task: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # the client's request headers
    backend: str = "teacher"  # who answered: teacher | student (sent as x-slimgate-backend)
    record: bool = True  # false for tasks a policy excludes from recording
    reserved: int = 0  # tokens taken from the caller's bucket before serving, not yet settled
    prompt_tokens: int = 0  # the estimate of the prompt within `reserved`


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
    if endpoint in ("chat/completions", "responses") and isinstance(meta, dict) and "task" in meta:
        body = dict(body)
        rest = {k: v for k, v in meta.items() if k != "task"}
        if rest:
            body["metadata"] = rest
        else:
            del body["metadata"]
    return body


def student_body(body: dict[str, Any]) -> dict[str, Any]:
    """What a student (or an auditing teacher) gets: the upstream body, never streamed."""
    return {k: v for k, v in upstream_body("chat/completions", body).items()
            if k not in ("stream", "stream_options")}


def first_violation(body: dict[str, Any], resp: dict[str, Any]) -> Violation | None:
    """The first choice that breaks the request's contract (runs in a worker thread)."""
    for choice in resp.get("choices") or [{}]:
        violation = check_contract(body, choice.get("message") or {})
        if violation is not None:
            return violation
    return None


async def contract_violation(
    body: dict[str, Any], resp: dict[str, Any], timeout_s: float
) -> str | None:
    """The violation code of a student's answer, checked off the event loop with a deadline;
    "contract_timeout" when the check did not finish (the answer is not trusted)."""
    try:
        violation = await asyncio.wait_for(
            asyncio.to_thread(first_violation, body, resp), timeout_s)
    except TimeoutError:
        return "contract_timeout"
    return violation.code if violation is not None else None


def check_schemas(body: dict[str, Any]) -> None:
    """400 for a schema pattern that does not compile (the client's to fix)."""
    problem = request_pattern_problem(body)
    if problem is not None:
        raise InvalidRequest(f"Invalid pattern in '{problem[0]}': {problem[1]}.",
                             param=problem[0])


def _total_tokens(ex: Exchange) -> int:
    usage = (ex.response or {}).get("usage")
    if usage is None and ex.chunks:
        usage = ex.chunks[-1].get("usage")
    return int((usage or {}).get("total_tokens") or 0)


def _streamed_tokens(ex: Exchange) -> int:
    """Output tokens already sent in `ex.chunks`, estimated (characters / 4)."""
    chars = 0
    for chunk in ex.chunks or ():
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            chars += len(delta.get("content") or "")
            for call in delta.get("tool_calls") or ():
                chars += len((call.get("function") or {}).get("arguments") or "")
    return chars // 4


def token_estimate(endpoint: Endpoint, body: dict[str, Any], output_cap: int) -> tuple[int, int]:
    """(prompt, output) tokens a request may spend: its JSON's characters / 4, and its
    max_completion_tokens / max_tokens (or `output_cap`) per choice; embeddings have no output."""
    prompt = len(orjson.dumps(body)) // 4
    if endpoint == "embeddings":
        return prompt, 0
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    n = body.get("n")
    cap = cap if isinstance(cap, int) and cap > 0 else output_cap
    return prompt, cap * (n if isinstance(n, int) and n > 1 else 1)


class Proxy:
    def __init__(
        self,
        config: Config,
        upstreams: Upstreams,
        recorder: Recorder,
        metrics: Metrics,
        limiter: RateLimiter,
        routing: RoutingTable,
        shadow: ShadowRunner,
        telemetry: SpanExporter | None = None,
    ) -> None:
        self._config = config
        self._telemetry = telemetry  # None unless [telemetry] otlp_endpoint is set
        self._upstreams = upstreams
        self._recorder = recorder
        self._metrics = metrics
        self._limiter = limiter
        self._routing = routing
        self._shadow = shadow

    def resolve(self, name: str) -> ModelConfig:
        m = self._config.model(name)
        if m is None:
            raise ModelNotFound(
                f"The model '{name}' does not exist or is not configured on this gateway.",
                param="model",
            )
        return m

    async def finish(self, ex: Exchange, ctx: RequestContext, status: int) -> None:
        elapsed = time.perf_counter() - ctx.started
        ex.status = status
        ex.latency_ms = elapsed * 1000
        ex.task_label = self._routing.task_label(ex.task)
        labels = (ex.model, ex.backend, ex.task_label)
        self._metrics.requests.labels(*labels, str(status)).inc()
        self._metrics.latency.labels(*labels).observe(elapsed)
        if self._limiter.tpm:
            await self._settle(ex, ctx, status)
        if self._telemetry is not None:
            self._telemetry.submit(ex, ctx.headers.get("traceparent"),
                                   self._routing.task(ex.task))
        if ctx.record:
            await self._recorder.submit(ex)

    async def _reserve(self, endpoint: Endpoint, body: dict[str, Any],
                       ctx: RequestContext) -> None:
        """Take what the request may spend from the caller's token bucket (429 when it does
        not fit); `finish` settles it. Called once per request, after its last 4xx check."""
        prompt, output = token_estimate(endpoint, body,
                                        self._config.server.rate_limit.reserve_output_tokens)
        await self._limiter.reserve_tokens(ctx.caller, prompt + output)
        ctx.reserved = min(prompt + output, self._limiter.tpm)
        ctx.prompt_tokens = prompt

    async def _settle(self, ex: Exchange, ctx: RequestContext, status: int) -> None:
        """Charge the true usage less the reservation: without usage, the prompt estimate and
        what was streamed; a stream the client closed (499) keeps at least its reservation."""
        spent = _total_tokens(ex)
        if not spent:
            streamed = _streamed_tokens(ex)
            spent = ctx.prompt_tokens + streamed if streamed else 0
        if status == 499:
            spent = max(spent, ctx.reserved)
        delta, ctx.reserved = spent - ctx.reserved, 0
        if status == 499:  # the request's task may be cancelled: settle without waiting
            self._limiter.charge_soon(ctx.caller, delta)
        else:
            await self._limiter.charge_tokens(ctx.caller, delta)

    async def failed(
        self, f: UpstreamFailure, ex: Exchange, ctx: RequestContext, model_name: str
    ) -> GatewayError:
        """An upstream failure: recorded with the exchange, turned into the client's error."""
        err = to_gateway_error(f, model_name)
        ex.error = f.message
        await self.finish(ex, ctx, err.status)
        return err

    async def admit(
        self, endpoint: Endpoint, body: dict[str, Any], ctx: RequestContext, *, stream: bool
    ) -> tuple[Decision | None, Exchange]:
        """A request past its model lookup: which task it is and who serves it (chat only),
        what it may spend reserved (its last 4xx, a 429), and its record opened."""
        decision = None
        if endpoint == "chat/completions":
            check_schemas(body)
            header_task = ctx.headers.get("x-slimgate-task")
            # Tasks are the caller's tenant's own, named or discovered (ServerConfig.client_tasks).
            namespace = self._config.server.task_namespace(ctx.key_id)
            try:
                assignment = await self._routing.assign(body, header_task, namespace)
            except InvalidTaskTag as e:  # a header is no body field: no `param` for it
                raise InvalidRequest(str(e), param=None if header_task else "metadata.task") \
                    from None
            self._metrics.count_assignment(assignment.how)
            decision = self._routing.decide(assignment, body, ctx.headers, ctx.request_id)
            ctx.task, ctx.record = decision.task, decision.record
        if self._limiter.tpm:
            await self._reserve(endpoint, body, ctx)
        return decision, Exchange(
            request_id=ctx.request_id, created_at=ctx.created_at, endpoint=endpoint,
            model=str(body.get("model")), stream=stream, request=body, key_id=ctx.key_id,
            task=ctx.task,
        )

    async def try_student(
        self, decision: Decision, body: dict[str, Any], ex: Exchange, ctx: RequestContext
    ) -> dict[str, Any] | None:
        """The student's answer if it honours the request's contract, else None (fallback)."""
        assert decision.student is not None and decision.task is not None
        send = student_body(body)
        started = time.perf_counter()
        reason = None
        try:
            resp = await decision.student.complete("chat/completions", send)
        except UpstreamFailure as f:
            reason = "timeout" if f.kind == "timeout" else "error"
        except Exception:  # whatever breaks on the student's side, the teacher answers
            log.exception("student %s v%s failed on request %s", decision.task,
                          decision.version, ctx.request_id)
            reason = "error"
        else:
            reason = await contract_violation(body, resp,
                                              self._config.students.contract_timeout_s)
        ex.student_version = decision.version
        if reason is not None:
            ex.fallback = reason
            self._metrics.student_fallbacks.labels(decision.task, reason).inc()
            return None
        student_ms = (time.perf_counter() - started) * 1000
        resp["model"] = body["model"]
        ex.backend = ctx.backend = "student"
        ex.upstream = (f"memory:{decision.task}" if decision.version == MEMORY_VERSION
                       else f"student:{decision.task}:v{decision.version}")
        ex.response = resp
        if decision.route.audit and ctx.record:  # a task excluded from recording stores nothing
            self._shadow.submit(Job(
                mode="audit", task=decision.task, version=decision.version or 0,
                kind=decision.kind or "text", request_id=ctx.request_id, body=send,
                served=first_message(resp), served_ms=student_ms,
                served_tokens=completion_tokens(resp), teacher=self.resolve(body["model"]),
                key_id=ctx.key_id,
            ))
        return resp

    def shadow_job(
        self, decision: Decision | None, body: dict[str, Any], resp: dict[str, Any],
        ctx: RequestContext,
    ) -> None:
        if (decision is None or not decision.route.shadow or decision.student is None
                or not ctx.record):
            return
        send = student_body(body)
        self._shadow.submit(Job(
            mode="shadow", task=decision.task or "", version=decision.version or 0,
            kind=decision.kind or "text", request_id=ctx.request_id, body=send,
            served=first_message(resp), served_ms=(time.perf_counter() - ctx.started) * 1000,
            served_tokens=completion_tokens(resp), student=decision.student, key_id=ctx.key_id,
        ))

    async def complete(
        self, endpoint: Endpoint, body: dict[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        model = self.resolve(body["model"])
        decision, ex = await self.admit(endpoint, body, ctx, stream=False)
        if decision is not None and decision.route.serve == "student":
            answer = await self.try_student(decision, body, ex, ctx)
            if answer is not None:
                await self.finish(ex, ctx, 200)
                return answer
        try:
            data, served = await self._upstreams.complete(
                model, endpoint, upstream_body(endpoint, body)
            )
        except UpstreamFailure as f:
            raise await self.failed(f, ex, ctx, model.name) from None
        ex.upstream, ex.upstream_model = served.model.name, served.model.upstream_model
        ex.response = data
        await self.finish(ex, ctx, 200)
        self.shadow_job(decision, body, data, ctx)
        return data

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any], ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        """Open the upstream stream (errors before the first chunk raise) and relay it."""
        model = self.resolve(body["model"])
        if endpoint == "embeddings":
            raise InvalidRequest("Embeddings cannot be streamed.", param="stream")
        decision, ex = await self.admit(endpoint, body, ctx, stream=True)
        send = upstream_body(endpoint, body)
        opts = send.get("stream_options") or {}
        client_wants_usage = bool(opts.get("include_usage"))
        if decision is not None and decision.route.serve == "student":
            # A student's answer is generated whole and checked against the request's
            # contract before the first byte leaves; then it is sent as a stream.
            answer = await self.try_student(decision, body, ex, ctx)
            if answer is not None:
                ex.ttft_ms = (time.perf_counter() - ctx.started) * 1000
                return self._replay(answer, ex, ctx, client_wants_usage)
        if not client_wants_usage:
            # Ask for usage anyway so the record has token counts; the extra chunk is
            # not relayed to a client that did not ask for it.
            send = {**send, "stream_options": {**opts, "include_usage": True}}
        try:
            chunks, served = await self._upstreams.open_stream(model, endpoint, send)
        except UpstreamFailure as f:
            raise await self.failed(f, ex, ctx, model.name) from None
        ex.upstream, ex.upstream_model = served.model.name, served.model.upstream_model
        ttft = time.perf_counter() - ctx.started
        ex.ttft_ms = ttft * 1000
        self._metrics.ttft.labels(ex.model, ex.backend,
                                  self._routing.task_label(ex.task)).observe(ttft)
        return self._relay(chunks, ex, ctx, client_wants_usage, model.name, decision, body)

    async def _replay(
        self, resp: dict[str, Any], ex: Exchange, ctx: RequestContext, client_wants_usage: bool
    ) -> AsyncIterator[bytes]:
        status = 499
        try:
            for chunk in chunks_from_response(resp):
                if chunk.get("usage") and not chunk.get("choices") and not client_wants_usage:
                    continue
                yield sse_event(chunk)
            status = 200
            await self.finish(ex, ctx, status)
            yield DONE
        finally:
            if status != 200:
                ex.error = CLIENT_CLOSED
                await self.finish(ex, ctx, status)

    async def _relay(
        self,
        chunks: AsyncIterator[dict[str, Any]],
        ex: Exchange,
        ctx: RequestContext,
        client_wants_usage: bool,
        model_name: str,
        decision: Decision | None = None,
        body: dict[str, Any] | None = None,
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
            await self.finish(ex, ctx, status)
            if decision is not None and body is not None and ex.endpoint == "chat/completions":
                self.shadow_job(decision, body, assemble_chat(seen), ctx)
            yield DONE
        except UpstreamFailure as f:
            status = 0  # recorded by failed(); the stream ends with the error event
            yield sse_event((await self.failed(f, ex, ctx, model_name)).envelope())
        finally:
            try:
                if status == 499:  # settled and recorded first: closing the upstream may wait
                    ex.error = ex.error or CLIENT_CLOSED
                    await self.finish(ex, ctx, status)
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]
