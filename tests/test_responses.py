"""`/v1/responses` in-process: translate and native upstreams, streams, state, errors, records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.app_state import AppState
from gateway.config import ConfigError, parse_config
from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config, running_client, sse_events

TOOLS = [{"type": "function", "name": "lookup", "description": "Look something up",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}]


def state(client: httpx.AsyncClient) -> AppState:
    return client.app.state.slimgate  # type: ignore[attr-defined, no-any-return]


async def rows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    await state(client).recorder.flush()
    return await state(client).store.exchanges()


@pytest.fixture
async def rclient(tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
                  ) -> AsyncIterator[httpx.AsyncClient]:
    config = gateway_config(tmp_path, fresh_upstream, models=[
        {"name": "chatty", "provider": "openai", "base_url": fresh_upstream.base_url,
         "model": "chat-model", "max_retries": 0, "timeout_s": 2},
        {"name": "native", "provider": "openai", "base_url": fresh_upstream.base_url,
         "model": "native-model", "responses": "native", "max_retries": 0, "timeout_s": 2},
        {"name": "native-then-chat", "provider": "openai", "base_url": fresh_upstream.base_url,
         "responses": "native", "max_retries": 0, "fallbacks": ["chatty"], "timeout_s": 2},
    ])
    async with running_client(config) as c:
        c.headers["authorization"] = f"Bearer {keys}"
        yield c


def test_responses_mode_defaults_and_checks() -> None:
    def mode(**model: Any) -> str:
        return parse_config({"models": [{"name": "m", **model}]}).models[0].responses_mode

    assert mode(base_url="https://api.openai.com/v1") == "native"
    assert mode(base_url="https://me.openai.azure.com/openai/v1") == "native"
    assert mode(base_url="http://vllm:8000/v1") == "translate"
    assert mode(base_url="http://vllm:8000/v1", responses="native") == "native"
    assert mode(provider="anthropic") == "translate"
    with pytest.raises(ConfigError, match="needs provider 'openai'"):
        mode(provider="anthropic", responses="native")
    with pytest.raises(ConfigError, match="responses"):
        mode(base_url="http://x/v1", responses="sometimes")


async def test_translated_request_reaches_chat_upstream_and_is_recorded(
    rclient: httpx.AsyncClient, fresh_upstream: FakeUpstream
) -> None:
    r = await rclient.post("/v1/responses", json={
        "model": "chatty", "instructions": "be brief", "input": "hello", "max_output_tokens": 30,
        "text": {"format": {"type": "json_object"}}, "metadata": {"task": "greet", "who": "me"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["id"].startswith("resp_") and body["output"][0]["type"] == "message"
    assert orjson.loads(body["output"][0]["content"][0]["text"]) == {"echo": "hello"}
    assert body["usage"]["input_tokens"] >= 1 and body["usage"]["total_tokens"] >= 2
    sent = fresh_upstream.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "hello"}]
    assert sent["max_tokens"] == 30 and sent["response_format"] == {"type": "json_object"}
    assert sent["metadata"] == {"who": "me"}  # slimgate's `task` stays in the gateway
    [row] = await rows(rclient)
    assert row["api"] == "responses" and row["endpoint"] == "chat/completions"
    # a client-named task is the key's own (server.client_tasks): "<key id>.greet"
    assert row["task"].endswith(".greet") and row["status"] == 200
    assert orjson.loads(row["request"])["messages"][1]["content"] == "hello"
    assert orjson.loads(row["response"])["choices"][0]["message"]["content"] == '{"echo":"hello"}'
    assert r.headers["x-slimgate-backend"] == "teacher"


async def test_native_upstream_gets_the_responses_body(
    rclient: httpx.AsyncClient, fresh_upstream: FakeUpstream
) -> None:
    r = await rclient.post("/v1/responses", json={
        "model": "native", "input": "call:lookup cats", "tools": TOOLS,
        "custom_field": {"kept": True}})
    assert r.status_code == 200, r.text
    [call] = r.json()["output"]
    assert call["type"] == "function_call" and call["name"] == "lookup"
    assert not r.json()["id"].startswith("resp_upstream")  # the gateway's own response id
    sent = fresh_upstream.requests[-1]
    assert sent["model"] == "native-model" and sent["input"] == "call:lookup cats"
    assert sent["tools"] == TOOLS and sent["custom_field"] == {"kept": True}
    [row] = await rows(rclient)
    recorded = orjson.loads(row["response"])["choices"][0]
    assert recorded["finish_reason"] == "tool_calls"
    assert recorded["message"]["tool_calls"][0]["function"]["name"] == "lookup"
    assert orjson.loads(row["request"])["tools"][0]["function"]["name"] == "lookup"


async def test_translated_stream_has_typed_events_in_order(rclient: httpx.AsyncClient) -> None:
    r = await rclient.post("/v1/responses", json={"model": "chatty", "input": "a b",
                                                  "stream": True})
    evs = sse_events(r.content)
    kinds = [e["type"] for e in evs]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 3,
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert "".join(e["delta"] for e in evs if e["type"].endswith("text.delta")) == "echo: a b"
    final = evs[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "echo: a b" and final["usage"]
    stored = await rclient.get(f"/v1/responses/{final['id']}")
    assert stored.json()["output"] == final["output"]


async def test_translated_stream_of_a_tool_call(rclient: httpx.AsyncClient) -> None:
    r = await rclient.post("/v1/responses", json={"model": "chatty", "input": "call:lookup x",
                                                  "tools": TOOLS, "stream": True})
    evs = sse_events(r.content)
    kinds = [e["type"] for e in evs]
    assert kinds[2:] == ["response.output_item.added", "response.function_call_arguments.delta",
                         "response.function_call_arguments.delta",
                         "response.function_call_arguments.done",
                         "response.output_item.done", "response.completed"]
    done = next(e for e in evs if e["type"].endswith("arguments.done"))
    assert done["name"] == "lookup" and orjson.loads(done["arguments"])["query"]
    assert evs[-1]["response"]["output"][0]["call_id"] == "call_1"


async def test_native_stream_is_relayed_and_recorded(rclient: httpx.AsyncClient) -> None:
    r = await rclient.post("/v1/responses", json={"model": "native", "input": "x y",
                                                  "stream": True})
    evs = sse_events(r.content)
    assert evs[0]["type"] == "response.created" and evs[-1]["type"] == "response.completed"
    [row] = await rows(rclient)
    assert row["api"] == "responses" and row["stream"] == 1
    assert orjson.loads(row["response"])["choices"][0]["message"]["content"] == "echo: x y"


async def test_previous_response_id_continues_on_any_upstream(
    rclient: httpx.AsyncClient, fresh_upstream: FakeUpstream
) -> None:
    first = (await rclient.post("/v1/responses", json={"model": "chatty", "input": "one"})).json()
    second = (await rclient.post("/v1/responses", json={
        "model": "native", "input": "two", "previous_response_id": first["id"]})).json()
    assert second["previous_response_id"] == first["id"]
    sent = fresh_upstream.requests[-1]
    assert "previous_response_id" not in sent  # the gateway holds the conversation
    assert [i.get("role") for i in sent["input"]] == ["user", "assistant", "user"]
    assert all("id" not in i for i in sent["input"])
    r = await rclient.post("/v1/responses", json={
        "model": "chatty", "input": "three", "previous_response_id": second["id"]})
    assert [m["content"] for m in fresh_upstream.requests[-1]["messages"]] == [
        "one", "echo: one", "two", "echo: two (turn 2)", "three"]
    items = (await rclient.get(f"/v1/responses/{r.json()['id']}/input_items",
                               params={"order": "asc", "limit": 3})).json()
    assert items["has_more"] is True and len(items["data"]) == 3
    assert items["data"][0]["content"] == [{"type": "input_text", "text": "one"}]
    more = (await rclient.get(f"/v1/responses/{r.json()['id']}/input_items",
                              params={"order": "asc", "after": items["last_id"]})).json()
    assert [i["role"] for i in more["data"]] == ["assistant", "user"]


async def test_other_keys_and_deleted_responses_are_not_found(
    rclient: httpx.AsyncClient
) -> None:
    made = (await rclient.post("/v1/responses", json={"model": "chatty", "input": "mine"})).json()
    other = {"authorization": "Bearer sk-gw-test-2"}
    for r in (await rclient.get(f"/v1/responses/{made['id']}", headers=other),
              await rclient.post("/v1/responses", headers=other, json={
                  "model": "chatty", "input": "x", "previous_response_id": made["id"]})):
        assert r.status_code == 404 and r.json()["error"]["message"]
    assert (await rclient.delete(f"/v1/responses/{made['id']}")).json()["deleted"] is True
    assert (await rclient.get(f"/v1/responses/{made['id']}")).status_code == 404
    unsaved = (await rclient.post("/v1/responses", json={
        "model": "chatty", "input": "x", "store": False})).json()
    assert (await rclient.get(f"/v1/responses/{unsaved['id']}")).status_code == 404


async def test_state_survives_a_restart(tmp_path: Path, fresh_upstream: FakeUpstream,
                                        keys: str) -> None:
    config = gateway_config(tmp_path, fresh_upstream)
    auth = {"authorization": f"Bearer {keys}"}
    async with running_client(config) as c:
        rid = (await c.post("/v1/responses", headers=auth,
                            json={"model": "gpt-test", "input": "keep"})).json()["id"]
    async with running_client(config) as c:
        r = await c.get(f"/v1/responses/{rid}", headers=auth)
        assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == \
            "echo: keep"


@pytest.mark.parametrize("body,param", [
    ({"model": "chatty", "input": [{"type": "function_call", "call_id": "c"}]}, "input[0].name"),
    ({"model": "chatty", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"model": "chatty", "input": "x", "conversation": "conv_1"}, "conversation"),
    ({"model": "chatty", "input": "x", "text": {"format": {"type": "json_schema"}}},
     "text.format.name"),
    ({"model": "nope", "input": "x"}, "model"),
    ({"model": "chatty", "input": "x", "previous_response_id": "resp_unknown"},
     "previous_response_id"),
])
async def test_bad_requests_get_openai_errors(rclient: httpx.AsyncClient, body: dict[str, Any],
                                             param: str) -> None:
    r = await rclient.post("/v1/responses", json=body)
    assert r.status_code in (400, 404)
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]


async def test_native_failure_falls_back_to_a_translated_model(
    rclient: httpx.AsyncClient, fresh_upstream: FakeUpstream
) -> None:
    r = await rclient.post("/v1/responses", json={"model": "native-then-chat",
                                                  "input": "fault:500 hi"})
    assert r.status_code == 502  # both fail: the fake answers 500 on either endpoint
    r = await rclient.post("/v1/responses", json={"model": "native-then-chat",
                                                  "input": "fault:500x1 hi"})
    assert r.status_code == 200
    assert "messages" in fresh_upstream.requests[-1]  # the fallback got chat completions
    [_, row] = await rows(rclient)
    assert row["upstream"] == "chatty" and row["api"] == "responses"


async def test_stream_cut_midway_ends_with_an_error_event(rclient: httpx.AsyncClient) -> None:
    r = await rclient.post("/v1/responses", json={"model": "chatty", "input": "fault:cut a b c",
                                                  "stream": True})
    evs = sse_events(r.content)
    assert evs[-1]["type"] == "error" and evs[-1]["message"]
    [row] = await rows(rclient)
    assert row["status"] >= 500 and row["error"]
