"""Every error path answers OpenAI's envelope with the right status, and is recorded."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fake_upstream import FakeUpstream
from tests.helpers import METRICS_AUTH, chat, gateway_config, rows, running_client


def assert_envelope(r: httpx.Response, status: int, type_: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if type_:
        assert err["type"] == type_
    assert r.headers["x-request-id"]
    return err


async def test_missing_and_wrong_key_get_401(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat("hi"), headers={"authorization": ""})
    assert assert_envelope(r, 401)["code"] == "missing_api_key"
    r = await client.post("/v1/chat/completions", json=chat("hi"),
                          headers={"authorization": "Bearer nope"})
    assert assert_envelope(r, 401)["code"] == "invalid_api_key"
    r = await client.get("/v1/models", headers={"authorization": "Bearer nope"})
    assert_envelope(r, 401)


async def test_second_key_works(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat("hi"),
                          headers={"authorization": "Bearer sk-gw-test-2"})
    assert r.status_code == 200


async def test_unknown_model_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json={**chat("hi"), "model": "nope"})
    err = assert_envelope(r, 404, "invalid_request_error")
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert_envelope(await client.get("/v1/models/nope"), 404)


async def test_unknown_path_and_method(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.post("/v1/nothing", json={}), 404)
    assert_envelope(await client.get("/v1/chat/completions"), 405)


@pytest.mark.parametrize("body,param", [
    ({"model": "gpt-test", "messages": []}, "messages"),
    ({"model": "gpt-test"}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({**chat("x"), "max_tokens": -1}, "max_tokens"),
    ({**chat("x"), "n": 100000}, "n"),
    ({**chat("x"), "temperature": 9}, "temperature"),
    ({"model": "gpt-test", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
    ({**chat("x"), "response_format": {"type": "xml"}}, "response_format"),
    ({**chat("x"), "tools": [{"type": "function", "function": {"name": "bad name!"}}]},
     "tools[0].function.name"),
])
async def test_invalid_bodies_get_400_with_param(
    client: httpx.AsyncClient, body: dict, param: str
) -> None:
    r = await client.post("/v1/chat/completions", json=body)
    err = assert_envelope(r, 400, "invalid_request_error")
    assert err["param"] is not None and err["param"].startswith(param)


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1,2]", b"\xff\xfe{}", b"[" * 5000])
async def test_unparseable_bodies_get_400(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post("/v1/chat/completions", content=raw,
                          headers={"content-type": "application/json"})
    assert_envelope(r, 400, "invalid_request_error")


async def test_oversized_body_gets_413(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, server={
        "api_keys_env": "SLIMGATE_TEST_KEYS", "max_body_bytes": 2048})
    async with running_client(cfg) as c:
        c.headers["authorization"] = f"Bearer {keys}"
        r = await c.post("/v1/chat/completions", json=chat("x" * 5000))
        assert_envelope(r, 413)
        assert (await c.post("/v1/chat/completions", json=chat("small"))).status_code == 200


@pytest.mark.parametrize("fault,status,type_", [
    ("fault:429", 429, "rate_limit_error"),
    ("fault:401", 502, "upstream_error"),
    ("fault:500", 502, "upstream_error"),
    ("fault:503", 503, "upstream_error"),
    ("fault:badjson", 502, "upstream_error"),
    ("fault:timeout", 504, "upstream_error"),
])
async def test_upstream_failures_map_to_statuses(
    client: httpx.AsyncClient, fault: str, status: int, type_: str
) -> None:
    r = await client.post("/v1/chat/completions", json={**chat(fault), "model": "backup"})
    assert_envelope(r, status, type_)
    if status == 429:
        assert int(r.headers["retry-after"]) >= 1
    [row] = await rows(client)
    assert row["status"] == status and row["error"]


async def test_upstream_client_error_passes_through(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat("fault:400"))
    err = assert_envelope(r, 400, "invalid_request_error")
    assert err["message"] == "scripted 400"


async def test_upstream_refused_connection(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, models=[
        {"name": "dead", "base_url": "http://127.0.0.1:9/v1", "max_retries": 1,
         "backoff_initial_s": 0.01}])
    async with running_client(cfg) as c:
        c.headers["authorization"] = f"Bearer {keys}"
        r = await c.post("/v1/chat/completions", json={**chat("hi"), "model": "dead"})
        assert_envelope(r, 502, "upstream_error")
        async with c.stream("POST", "/v1/chat/completions",
                            json={**chat("hi"), "model": "dead", "stream": True}) as s:
            assert s.status_code == 502  # failed before the first byte: a plain HTTP error


async def test_stream_error_before_first_chunk_is_http_error(client: httpx.AsyncClient) -> None:
    async with client.stream("POST", "/v1/chat/completions",
                             json={**chat("fault:429"), "model": "backup", "stream": True}) as r:
        assert r.status_code == 429
        await r.aread()
        assert r.json()["error"]["type"] == "rate_limit_error"


async def test_models_health_ready_metrics(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["gpt-test", "backup", "with-fallback"]
    card = (await client.get("/v1/models/backup")).json()
    assert card == {**card, "id": "backup", "object": "model", "owned_by": "slimgate"}
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["store"] == "ok"
    await client.post("/v1/chat/completions", json=chat("hi"))
    text = (await client.get("/metrics", headers=METRICS_AUTH)).text
    for name in ("slimgate_requests_total", "slimgate_request_latency_seconds_bucket",
                 "slimgate_time_to_first_token_seconds", "slimgate_record_queue_depth",
                 "slimgate_records_dropped_total"):
        assert name in text
    assert 'slimgate_requests_total{backend="teacher",model="gpt-test",status="200",task=""}' \
        in text


async def test_readyz_without_models_is_503(tmp_path: Path, fresh_upstream: FakeUpstream) -> None:
    async with running_client(gateway_config(tmp_path, fresh_upstream, models=[])) as c:
        assert (await c.get("/readyz")).status_code == 503


async def test_open_gateway_without_keys(
    tmp_path: Path, fresh_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLIMGATE_TEST_KEYS", raising=False)
    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        assert (await c.post("/v1/chat/completions", json=chat("hi"))).status_code == 200


async def test_openapi_documents_request_bodies(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    ref = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["$ref"]
    assert ref.endswith("ChatCompletionRequest")
    assert "messages" in spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]


async def test_stream_slow_first_byte_times_out_cleanly(client: httpx.AsyncClient) -> None:
    async with client.stream("POST", "/v1/chat/completions",
                             json={**chat("fault:slowfirst"), "model": "backup",
                                   "stream": True}) as r:
        assert r.status_code == 504  # no chunk within timeout_s: a plain HTTP error
        await r.aread()
        assert r.json()["error"]["code"] == "upstream_timeout"


async def test_cors_off_by_default_and_configurable(
    tmp_path: Path, fresh_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    pre = {"origin": "https://app.example.com", "access-control-request-method": "POST"}
    r = await client.options("/v1/chat/completions", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    cfg = gateway_config(tmp_path, fresh_upstream, server={
        "api_keys_env": "SLIMGATE_TEST_KEYS", "cors_origins": ["https://app.example.com"]})
    async with running_client(cfg) as c:
        r = await c.options("/v1/chat/completions", headers=pre)
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
