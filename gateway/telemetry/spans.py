"""One finished exchange as one span, in the OpenTelemetry GenAI semantic conventions.

`gen_ai.*` attributes say what was asked and answered (operation, models, provider, tokens,
finish reasons, sampling parameters); `slimgate.*` say what the gateway decided (task,
stage, backend, student version, fallback). Never a prompt, an answer, a key or an upstream
error text: those stay in the store. A W3C `traceparent` from the client makes the span a
child of the client's own trace.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from gateway.store.catalog import TaskRecord
from gateway.store.recorder import Exchange
from gateway.streams import assemble_chat, assemble_text
from gateway.telemetry.otlp import STATUS_ERROR, AttrValue, Span

OPERATIONS = {"chat/completions": "chat", "completions": "text_completion",
              "embeddings": "embeddings"}
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
# Labels mined from TF-IDF terms are words of the requests themselves: not sent.
_SAFE_LABEL_SOURCES = {"operator", "explicit", "schema", "tools", "instruction", "teacher"}


@dataclass(slots=True)
class Finished:
    """What the request path hands over: the exchange, the client's trace context and the
    task as routed (its stage at decision time)."""

    ex: Exchange
    traceparent: str | None
    task: TaskRecord | None


def parent_of(traceparent: str | None) -> tuple[bytes, bytes] | None:
    """(trace id, parent span id) of a valid W3C traceparent header, else None."""
    m = _TRACEPARENT.fullmatch((traceparent or "").strip().lower())
    if m is None or set(m.group(1)) == {"0"} or set(m.group(2)) == {"0"}:
        return None
    return bytes.fromhex(m.group(1)), bytes.fromhex(m.group(2))


def _answer(ex: Exchange) -> dict[str, Any]:
    if ex.chunks is not None:
        return assemble_chat(ex.chunks) if ex.endpoint == "chat/completions" else (
            assemble_text(ex.chunks))
    return ex.response or {}


def _request_params(body: dict[str, Any] | None, attrs: dict[str, AttrValue]) -> None:
    if not isinstance(body, dict):
        return
    for key, name in (("max_tokens", "max_tokens"), ("max_completion_tokens", "max_tokens"),
                      ("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed")):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[f"gen_ai.request.{name}"] = value


def _error_type(status: int) -> str:
    return "client_closed" if status == 499 else str(status)


def to_span(f: Finished, provider: str) -> Span:
    """The span; `provider` is the configured provider of the model that answered."""
    ex = f.ex
    operation = OPERATIONS.get(ex.endpoint, ex.endpoint)
    answer = _answer(ex)
    raw_usage, raw_choices = answer.get("usage"), answer.get("choices")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    choices: list[Any] = raw_choices if isinstance(raw_choices, list) else []
    reasons = [str(c["finish_reason"]) for c in choices
               if isinstance(c, dict) and c.get("finish_reason")]
    provider = "slimgate" if ex.backend == "student" else provider
    attrs: dict[str, AttrValue] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the name before semantic conventions 1.37
        "gen_ai.request.model": ex.model,
    }
    if isinstance(answer.get("model"), str):
        attrs["gen_ai.response.model"] = answer["model"]
    if isinstance(answer.get("id"), str):
        attrs["gen_ai.response.id"] = answer["id"]
    if reasons:
        attrs["gen_ai.response.finish_reasons"] = reasons
    for ours, theirs in (("input_tokens", ("prompt_tokens", "input_tokens")),
                         ("output_tokens", ("completion_tokens", "output_tokens"))):
        n = next((usage[k] for k in theirs if isinstance(usage.get(k), int)), None)
        if n is not None:
            attrs[f"gen_ai.usage.{ours}"] = n
    _request_params(ex.request, attrs)
    attrs["http.response.status_code"] = ex.status
    attrs["slimgate.backend"] = ex.backend
    attrs["slimgate.api"] = ex.api or ex.endpoint
    attrs["slimgate.stream"] = ex.stream
    attrs["slimgate.request_id"] = ex.request_id
    if ex.upstream:
        attrs["slimgate.upstream"] = ex.upstream
    if ex.task:
        attrs["slimgate.task"] = ex.task
    if f.task is not None:
        attrs["slimgate.stage"] = f.task.stage
        if f.task.stage == "canary":
            attrs["slimgate.canary_step"] = f.task.step
        source = "operator" if f.task.named_by else f.task.info.get("label_from")
        if source in _SAFE_LABEL_SOURCES or f.task.explicit:
            attrs["slimgate.task.label"] = f.task.label
    if (ex.upstream or "").startswith("memory:"):
        attrs["slimgate.answer_memory"] = True  # the teacher's remembered answer
    elif ex.student_version is not None:
        attrs["slimgate.student.version"] = ex.student_version
    if ex.fallback:
        attrs["slimgate.fallback"] = ex.fallback
    if ex.ttft_ms is not None:
        attrs["slimgate.ttft_ms"] = float(ex.ttft_ms)
    start = int(ex.created_at * 1e9)
    end = start + int((ex.latency_ms or 0.0) * 1e6)
    parent = parent_of(f.traceparent)
    trace_id, parent_id = parent if parent else (os.urandom(16), b"")
    span = Span(trace_id, os.urandom(8), f"{operation} {ex.model}", start, end, attrs,
                parent_span_id=parent_id)
    if ex.status >= 400:
        attrs["error.type"] = _error_type(ex.status)
        span.status_code, span.status_message = STATUS_ERROR, f"HTTP {ex.status}"
    return span
