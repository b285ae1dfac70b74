"""OpenTelemetry spans: one per request, GenAI conventions plus what the gateway decided,
sent over OTLP/HTTP to a receiver on 127.0.0.1 that decodes them with the official
opentelemetry-proto classes (protobuf) or as OTLP/JSON. No content, no keys in any span.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import ConfigError, parse_config
from gateway.offline.local import free_port
from tests.fake_upstream import FakeUpstream
from tests.helpers import JSON_BODY, METRICS_AUTH, ScriptedStudent, add_task, gateway_config

trace_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SECRET = "order 42"  # the user's words in JSON_BODY: never in a span


class Receiver:
    """An OTLP/HTTP traces endpoint: keeps each request's content type and body."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []
        self.port = free_port()
        self.arrived = asyncio.Event()  # a post is being received
        self.hold: asyncio.Event | None = None  # answer only once this is set

    async def _traces(self, request: web.Request) -> web.Response:
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        self.posts.append((request.content_type, await request.read(), dict(request.headers)))
        return web.Response(status=200)

    def spans(self) -> list[dict[str, Any]]:
        """Every span received, decoded: {name, kind, trace_id, parent, attrs, status}."""
        out = []
        for ctype, body, _ in self.posts:
            if ctype == "application/x-protobuf":
                req = trace_pb2.ExportTraceServiceRequest.FromString(body)
                for rs in req.resource_spans:
                    resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            out.append({"name": s.name, "kind": s.kind, "resource": resource,
                                        "trace_id": s.trace_id.hex(),
                                        "parent": s.parent_span_id.hex(),
                                        "start": s.start_time_unix_nano,
                                        "end": s.end_time_unix_nano,
                                        "status": s.status.code,
                                        "attrs": {kv.key: _pb_value(kv.value)
                                                  for kv in s.attributes}})
            else:
                assert ctype == "application/json"
                for rs in orjson.loads(body)["resourceSpans"]:
                    for ss in rs["scopeSpans"]:
                        for s in ss["spans"]:
                            out.append({"name": s["name"], "kind": s["kind"],
                                        "trace_id": s["traceId"],
                                        "parent": s.get("parentSpanId", ""),
                                        "status": s.get("status", {}).get("code", 0),
                                        "attrs": {a["key"]: _json_value(a["value"])
                                                  for a in s["attributes"]}})
        return out


def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    return getattr(v, kind)


def _json_value(v: dict[str, Any]) -> Any:
    (kind, value), = v.items()
    if kind == "intValue":
        return int(value)
    if kind == "arrayValue":
        return [_json_value(x) for x in value["values"]]
    return value


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", rec._traces)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", rec.port).start()
    yield rec
    await runner.cleanup()


async def _drive(cfg: Any, requests: list[tuple[str, dict[str, Any], dict[str, str]]],
                 student: ScriptedStudent | None = None) -> list[httpx.Response]:
    """Send the requests through the app; its shutdown flushes the spans."""
    app = create_app(cfg, student_factory=(lambda t, v: student) if student else None)
    out = []
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        for path, body, headers in requests:
            out.append(await c.post(path, json=body, headers=headers))
        out.append(await c.get("/metrics", headers=METRICS_AUTH))
    return out


async def test_one_span_per_request_with_genai_and_slimgate_attributes(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLIMGATE_TEST_OTLP_HEADERS", "authorization=Basic%20abc")
    cfg = gateway_config(tmp_path, fresh_upstream, telemetry={
        "otlp_endpoint": f"http://127.0.0.1:{receiver.port}", "interval_s": 0.05,
        "headers_env": "SLIMGATE_TEST_OTLP_HEADERS", "service_name": "gw-under-test"})
    add_task(cfg.store.path, "primary")  # t-orders: JSON_BODY is served by its student
    auth = {"authorization": f"Bearer {keys}"}
    chat = {"model": "gpt-test", "max_tokens": 50, "temperature": 0.2,
            "messages": [{"role": "user", "content": "hello there"}]}
    responses = await _drive(cfg, [
        ("/v1/chat/completions", chat, {**auth, "traceparent": TRACEPARENT}),
        ("/v1/chat/completions", {**chat, "stream": True,
                                  "stream_options": {"include_usage": True}}, auth),
        ("/v1/chat/completions", JSON_BODY, auth),
        ("/v1/responses", {"model": "gpt-test", "input": "hello again"}, auth),
        ("/v1/chat/completions", {**chat, "messages": [
            {"role": "user", "content": "fault:500"}]}, auth),
    ], student=ScriptedStudent())
    assert [r.status_code for r in responses[:5]] == [200, 200, 200, 200, 502]
    spans = receiver.spans()
    assert len(spans) == 5
    by_order = sorted(spans, key=lambda s: s["start"])
    plain, stream, student, resp_api, failed = by_order
    a = plain["attrs"]
    assert plain["name"] == "chat gpt-test" and plain["kind"] == 3  # CLIENT
    assert plain["resource"]["service.name"] == "gw-under-test"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-test"
    assert a["gen_ai.response.model"] == "upstream-model"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["slimgate.backend"] == "teacher" and a["slimgate.upstream"] == "gpt-test"
    assert plain["trace_id"] == TRACEPARENT[3:35] and plain["parent"] == TRACEPARENT[36:52]
    assert plain["end"] > plain["start"]
    assert stream["attrs"]["slimgate.stream"] is True
    assert stream["attrs"]["gen_ai.usage.output_tokens"] > 0  # from the stream's usage chunk
    assert "slimgate.ttft_ms" in stream["attrs"] and stream["parent"] == ""
    s = student["attrs"]
    assert (s["slimgate.task"], s["slimgate.stage"], s["slimgate.backend"]) == (
        "t-orders", "primary", "student")
    assert s["gen_ai.provider.name"] == "slimgate" and s["slimgate.student.version"] == 1
    assert resp_api["attrs"]["slimgate.api"] == "responses"
    assert failed["status"] == 2 and failed["attrs"]["error.type"] == "502"
    _, raw, headers = receiver.posts[0]
    assert headers["Authorization"] == "Basic abc"  # from the env var, URL-decoded
    everything = b"".join(body for _, body, _ in receiver.posts)
    for secret in (SECRET, "hello there", keys, "sk-provider-secret-123", "Basic abc"):
        assert secret.encode() not in everything
    metrics = responses[-1].text
    assert 'slimgate_telemetry_spans_total{outcome="dropped"}' not in metrics


async def test_json_protocol_and_a_full_queue_drops_and_counts(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, receiver: Receiver,
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, telemetry={
        "otlp_endpoint": f"http://127.0.0.1:{receiver.port}/v1/traces",
        "protocol": "http/json", "queue_size": 2, "interval_s": 3600})
    chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    out = await _drive(cfg, [("/v1/chat/completions", chat,
                              {"authorization": f"Bearer {keys}"})] * 5)
    assert all(r.status_code == 200 for r in out[:5])  # replies never wait for telemetry
    spans = receiver.spans()
    assert len(spans) == 2 and spans[0]["attrs"]["gen_ai.request.model"] == "gpt-test"
    assert 'slimgate_telemetry_spans_total{outcome="dropped"} 3.0' in out[-1].text


async def test_an_unreachable_collector_costs_the_client_nothing(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str,
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, telemetry={
        "otlp_endpoint": f"http://127.0.0.1:{free_port()}", "interval_s": 0.01,
        "timeout_s": 1.0})
    chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    out = await _drive(cfg, [("/v1/chat/completions", chat,
                              {"authorization": f"Bearer {keys}"})] * 3)
    assert [r.status_code for r in out[:3]] == [200, 200, 200]


def test_telemetry_config_is_strict() -> None:
    base = {"models": [{"name": "m", "base_url": "http://127.0.0.1:1/v1"}]}
    cfg = parse_config({**base, "telemetry": {"otlp_endpoint": "http://otel:4318"}})
    assert cfg.telemetry.otlp_endpoint == "http://otel:4318/v1/traces"
    assert parse_config(base).telemetry.otlp_endpoint is None  # off by default
    for bad in ({"otlp_endpoint": "otel:4318"}, {"protocol": "grpc"}, {"endpoint": "x"}):
        with pytest.raises(ConfigError, match="telemetry"):
            parse_config({**base, "telemetry": bad})


def test_gateway_needs_no_opentelemetry_package() -> None:
    """The exporter is slimgate's own: importing it adds no OpenTelemetry SDK, exporter or
    protobuf module to what the gateway already loads (a dependency pulls opentelemetry-api)."""
    code = ("import sys, gateway.app; before = set(sys.modules); "
            "import gateway.telemetry.exporter; "
            "print(sorted(m for m in set(sys.modules) - before "
            "if m.startswith(('opentelemetry', 'google'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "[]"


async def test_shutdown_waits_for_the_batch_in_flight(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, receiver: Receiver,
) -> None:
    """The gateway stops while the collector has not yet answered a batch: the sender is not
    cancelled mid-send (which lost that batch), and the spans queued after it follow."""
    cfg = gateway_config(tmp_path, fresh_upstream, telemetry={
        "otlp_endpoint": f"http://127.0.0.1:{receiver.port}", "interval_s": 0.01,
        "batch_size": 1})
    receiver.hold = asyncio.Event()
    auth = {"authorization": f"Bearer {keys}"}
    chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
    app = create_app(cfg)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        for _ in range(3):
            r = await c.post("/v1/chat/completions", json=chat, headers=auth)
            assert r.status_code == 200
        await asyncio.wait_for(receiver.arrived.wait(), 60)  # a batch is in flight, held
        asyncio.get_running_loop().call_later(0.2, receiver.hold.set)
    assert len(receiver.spans()) == 3
