"""Security: hostile inputs on the request path get a 4xx (or a classified 5xx), never a crash.

Task ids with a trailing newline, JSON nested past what orjson can write, a string
"stream", an upstream 5xx that echoes internals, an SSE line longer than aiohttp reads,
an admin `limit` of -1: each was a crash, a leak or a silent truth before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.registry import Registry, RegistryError
from gateway.requestid import RequestIdMiddleware
from gateway.task_ids import is_task_id
from gateway.upstream.base import UpstreamFailure
from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config, running_client


def chat(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


@pytest.mark.parametrize("bad", ["foo\n", "foo\r\n", "\nfoo", "a..b", "x" * 65])
def test_task_id_rule_is_whole_string_everywhere(tmp_path: Path, bad: str) -> None:
    assert not is_task_id(bad)
    with pytest.raises(RegistryError):
        Registry(tmp_path).task_dir(bad)


async def test_trailing_newline_task_is_a_400_not_a_crash(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat(metadata={"task": "foo\n"}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata.task"


async def test_request_id_with_trailing_newline_is_replaced() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["id"] = scope["state"]["request_id"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"x-request-id", b"abc\n")]}
    await RequestIdMiddleware(app)(scope, None, send)  # type: ignore[arg-type]
    assert seen["id"].startswith("req_") and "\n" not in seen["id"]


async def test_admin_path_and_limit_are_checked(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLIMGATE_ADMIN_KEYS", "sk-admin-x")
    admin = {"authorization": "Bearer sk-admin-x"}
    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        newline = await c.post("/admin/tasks/foo%0A/rollback", headers=admin)
        negative = await c.get("/admin/audit?limit=-1", headers=admin)
        huge = await c.get("/admin/audit?limit=100000", headers=admin)
    assert newline.status_code == 400
    assert negative.status_code == 400 and negative.json()["error"]["param"] == "limit"
    assert huge.status_code == 400


@pytest.mark.parametrize("depth", [200, 300, 1000])
async def test_deep_json_is_a_400(client: httpx.AsyncClient, depth: int) -> None:
    nested: Any = "x"
    for _ in range(depth):
        nested = [nested]
    raw = orjson.dumps(chat(extra_field=nested)) if depth < 255 else (
        b'{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"x":'
        + b"[" * depth + b"]" * depth + b"}")
    r = await client.post("/v1/chat/completions", content=raw,
                          headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert "nests deeper" in r.json()["error"]["message"]


@pytest.mark.parametrize("value", ["false", "true", 0, 1, "yes"])
async def test_stream_must_be_a_boolean(client: httpx.AsyncClient, value: Any) -> None:
    r = await client.post("/v1/chat/completions", json=chat(stream=value))
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"
    r = await client.post("/v1/responses", json={"model": "gpt-test", "input": "hi",
                                                 "stream": value})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"


async def test_upstream_5xx_text_is_not_echoed_nor_stored(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str,
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream)
    async with running_client(cfg) as c:
        c.headers["authorization"] = f"Bearer {keys}"
        r = await c.post("/v1/chat/completions", json={**chat("fault:500"), "model": "backup"})
        client_err = await c.post("/v1/chat/completions", json={**chat("fault:400"),
                                                                 "model": "backup"})
        await c.app.state.slimgate.recorder.flush()  # type: ignore[attr-defined]
    assert r.status_code == 502 and "scripted 500" not in r.text
    assert client_err.status_code == 400 and "scripted 400" in r.text + client_err.text
    from gateway.store.db import connect

    con = connect(cfg.store.path)
    errors = [row[0] for row in con.execute("SELECT error FROM exchanges WHERE status = 502")]
    con.close()
    assert errors and all("scripted 500" not in (e or "") for e in errors)


async def test_an_overlong_sse_line_ends_the_stream_with_an_error_event() -> None:
    import aiohttp

    from gateway.upstream.openai_http import OpenAIHTTPBackend

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices": [{"delta": {"content": "' + b"a" * 2_000_000
                         + b'"}}]}\n\n')
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        backend = OpenAIHTTPBackend("t", str(server.make_url("/v1")), session,
                                    upstream_model="m", timeout_s=10)
        with pytest.raises(UpstreamFailure) as failure:
            async for _ in backend.stream("chat/completions", chat(stream=True)):
                pass
    assert failure.value.kind == "malformed"
