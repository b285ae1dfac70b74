"""The chat completions endpoint in-process: answers, streams, retries, fallbacks, records."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson

from gateway.app_state import AppState
from tests.fake_upstream import FakeUpstream
from tests.helpers import METRICS_AUTH, chat, gateway_config, rows, running_client


def state(client: httpx.AsyncClient) -> AppState:
    return client.app.state.slimgate  # type: ignore[attr-defined, no-any-return]


async def test_plain_chat_is_forwarded_and_recorded(
    client: httpx.AsyncClient, fresh_upstream: FakeUpstream
) -> None:
    r = await client.post("/v1/chat/completions", json=chat("hello", seed=7, custom_field={"a": 1}))
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "echo: hello"
    sent = fresh_upstream.requests[-1]
    assert sent["model"] == "upstream-model"  # the upstream's own name
    assert sent["custom_field"] == {"a": 1} and sent["seed"] == 7  # unknown fields untouched
    assert fresh_upstream.headers[-1]["Authorization"] == "Bearer sk-provider-secret-123"
    [row] = await rows(client)
    assert row["request_id"] == r.headers["x-request-id"]
    assert row["model"] == "gpt-test" and row["upstream"] == "gpt-test"
    assert row["status"] == 200 and row["stream"] == 0 and row["finish_reason"] == "stop"
    assert orjson.loads(row["request"])["messages"][0]["content"] == "hello"
    assert orjson.loads(row["response"])["choices"][0]["message"]["content"] == "echo: hello"
    assert row["prompt_tokens"] >= 1 and row["completion_tokens"] >= 1
    assert row["key_id"] and "sk-gw" not in row["key_id"]
    assert row["latency_ms"] > 0


async def test_client_request_id_is_kept(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat("hi"),
                          headers={"x-request-id": "my-trace-42"})
    assert r.headers["x-request-id"] == "my-trace-42"
    [row] = await rows(client)
    assert row["request_id"] == "my-trace-42"


async def test_metadata_task_is_not_sent_upstream(
    client: httpx.AsyncClient, fresh_upstream: FakeUpstream
) -> None:
    body = chat("hi", metadata={"task": "triage", "team": "x"})
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assert fresh_upstream.requests[-1]["metadata"] == {"team": "x"}


async def test_stream_relays_chunks_and_records_assembled_answer(
    client: httpx.AsyncClient, fresh_upstream: FakeUpstream
) -> None:
    async with client.stream("POST", "/v1/chat/completions",
                             json=chat("one two three", stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln async for ln in r.aiter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [orjson.loads(ln[6:]) for ln in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: one two three"
    assert all("usage" not in c for c in chunks)  # not asked for, not relayed
    assert fresh_upstream.requests[-1]["stream_options"] == {"include_usage": True}
    [row] = await rows(client)
    resp = orjson.loads(row["response"])
    assert resp["choices"][0]["message"]["content"] == "echo: one two three"
    assert row["stream"] == 1 and row["ttft_ms"] > 0 and row["completion_tokens"] >= 1


async def test_stream_with_usage_requested(client: httpx.AsyncClient) -> None:
    body = chat("hi", stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        lines = [ln async for ln in r.aiter_lines() if ln.startswith("data: {")]
    last = orjson.loads(lines[-1][6:])
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0


async def test_streamed_tool_call_is_assembled(client: httpx.AsyncClient) -> None:
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    body = chat("please call:search now", stream=True, tools=tools)
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        _ = [ln async for ln in r.aiter_lines()]
    [row] = await rows(client)
    msg = orjson.loads(row["response"])["choices"][0]["message"]
    assert msg["tool_calls"][0]["function"]["name"] == "search"
    assert orjson.loads(msg["tool_calls"][0]["function"]["arguments"])["query"]
    assert row["finish_reason"] == "tool_calls"


async def test_retries_then_succeeds(
    client: httpx.AsyncClient, fresh_upstream: FakeUpstream
) -> None:
    r = await client.post("/v1/chat/completions", json=chat("fault:500x2 hi"))
    assert r.status_code == 200
    assert len(fresh_upstream.requests) == 3
    metrics = (await client.get("/metrics", headers=METRICS_AUTH)).text
    assert 'slimgate_upstream_errors_total{kind="server",upstream="gpt-test"} 2.0' in metrics


async def test_fallback_model_answers(
    client: httpx.AsyncClient, fresh_upstream: FakeUpstream
) -> None:
    r = await client.post("/v1/chat/completions",
                          json={**chat("fault:500x1 hi"), "model": "with-fallback"})
    assert r.status_code == 200
    assert [q["model"] for q in fresh_upstream.requests] == ["primary-model", "backup-model"]
    [row] = await rows(client)
    assert row["model"] == "with-fallback" and row["upstream"] == "backup"


async def test_stream_cut_midway_becomes_sse_error(client: httpx.AsyncClient) -> None:
    async with client.stream("POST", "/v1/chat/completions",
                             json=chat("fault:cut a b c d", stream=True)) as r:
        assert r.status_code == 200
        lines = [ln async for ln in r.aiter_lines() if ln.startswith("data: ")]
    last = orjson.loads(lines[-1][6:])
    assert last["error"]["type"] == "upstream_error"
    assert "data: [DONE]" not in lines
    [row] = await rows(client)
    assert row["status"] == 502 and row["error"]


async def test_concurrent_requests_all_recorded(client: httpx.AsyncClient) -> None:
    rs = await asyncio.gather(*[
        client.post("/v1/chat/completions", json=chat(f"n{i}")) for i in range(50)
    ])
    assert all(r.status_code == 200 for r in rs)
    recorded = {row["request_id"] for row in await rows(client)}
    assert recorded == {r.headers["x-request-id"] for r in rs}


async def test_completions_and_embeddings(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/completions", json={"model": "gpt-test", "prompt": "say"})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "echo: say"
    r = await client.post("/v1/embeddings", json={"model": "gpt-test", "input": ["a", "b"]})
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    emb = [row for row in await rows(client) if row["endpoint"] == "embeddings"][0]
    assert orjson.loads(emb["response"])["data_count"] == 2  # vectors are not stored


async def test_sync_durability_commits_before_the_reply(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, store={
        "path": str(tmp_path / "s.db"), "durability": "sync"})
    async with running_client(cfg) as c:
        c.headers["authorization"] = f"Bearer {keys}"
        r = await c.post("/v1/chat/completions", json=chat("durable"))
        async with c.stream("POST", "/v1/chat/completions",
                            json=chat("durable stream", stream=True)) as s:
            _ = [ln async for ln in s.aiter_lines()]
        ids = {row["request_id"] for row in await state(c).store.exchanges()}  # no flush()
        assert {r.headers["x-request-id"], s.headers["x-request-id"]} <= ids
