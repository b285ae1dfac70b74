"""Security: a client's JSON schema cannot make the gateway fetch URLs or hang on a regex.

Schemas in `response_format` and tool parameters are the client's. A remote `$ref` is never
fetched (it makes the answer unverifiable: the teacher serves); a catastrophic `pattern`
is cut off by the regex timeout; an invalid pattern is the client's 400; and the whole
check runs off the event loop, so `/healthz` answers while a contract is being checked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from gateway.app import create_app
from policies.contract import check_contract
from tests.conftest import gateway_config
from tests.fake_upstream import FakeUpstream
from tests.test_routing import ScriptedStudent, add_task


class SlowSchemaHost:
    """A loopback host that serves a schema after `delay_s`, counting who asked."""

    def __init__(self, delay_s: float = 3.0) -> None:
        self.delay_s, self.hits, self.port = delay_s, 0, 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _schema(self, request: web.Request) -> web.Response:
        self.hits += 1
        await asyncio.sleep(self.delay_s)
        return web.json_response({"type": "object"})

    def __enter__(self) -> SlowSchemaHost:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_get("/s.json", self._schema)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/s.json"


@pytest.fixture
def slow_host() -> Iterator[SlowSchemaHost]:
    with SlowSchemaHost() as host:
        yield host


def _schema_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": "order 42"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "order", "schema": schema}}}


def _answer(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def _bounded(fn: Any, limit_s: float) -> Any:
    """Run fn in a daemon thread; fail (instead of hanging the suite) past limit_s."""
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    started = time.perf_counter()
    worker.start()
    worker.join(limit_s)
    assert not worker.is_alive(), f"contract check still running after {limit_s}s"
    return out[0], time.perf_counter() - started


def test_remote_ref_is_never_fetched_and_is_a_contract_failure(
    slow_host: SlowSchemaHost,
) -> None:
    body = _schema_body({"$ref": slow_host.url})
    violation, took = _bounded(lambda: check_contract(body, _answer('{"a": 1}')), 2.0)
    assert slow_host.hits == 0
    assert violation is not None and violation.code == "unverifiable"
    assert took < 1.0


_CATASTROPHIC = """
import json, sys, time
from policies.contract import check_contract
body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {
    "type": "json_schema", "json_schema": {"name": "s", "schema": json.loads(sys.argv[1])}}}
started = time.perf_counter()
v = check_contract(body, {"role": "assistant", "content": sys.argv[2]})
print(json.dumps([v.code if v else None, time.perf_counter() - started]))
"""


def _check_in_subprocess(schema: dict[str, Any], answer: str) -> tuple[str | None, float]:
    """In a child process: a regex that holds the GIL would otherwise hang the suite."""
    import json
    import subprocess
    import sys

    try:
        out = subprocess.run([sys.executable, "-c", _CATASTROPHIC, json.dumps(schema), answer],
                             capture_output=True, text=True, timeout=20, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("the contract check was still running after 20 s")
    code, took = json.loads(out.stdout)
    return code, took


def test_catastrophic_pattern_is_cut_off() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string",
                                                      "pattern": "^(a|aa)+$"}}}
    code, took = _check_in_subprocess(schema, '{"id": "' + "a" * 60 + 'b"}')
    assert code == "unverifiable" and took < 2.0
    # patternProperties, and the patterns additionalProperties consults, are bounded too
    schema = {"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}},
              "additionalProperties": False}
    code, _ = _check_in_subprocess(schema, '{"' + "a" * 60 + 'b": 1}')
    assert code == "unverifiable"
    assert check_contract(_schema_body(schema), _answer('{"aaa": 1}')) is None  # honest: passes


async def test_invalid_pattern_is_a_400_with_its_param(client: httpx.AsyncClient) -> None:
    body = _schema_body({"type": "object", "properties": {"id": {"pattern": "(("}}})
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "response_format.json_schema.schema.properties.id.pattern"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "patternProperties": {"[z-a]": {}}}}}]
    r = await client.post("/v1/chat/completions", json={
        "model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "tools": tools})
    assert r.status_code == 400 and r.json()["error"]["param"] == (
        "tools[0].function.parameters.patternProperties")


async def test_checking_a_contract_never_stalls_the_event_loop(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, slow_host: SlowSchemaHost,
) -> None:
    body = _schema_body({"$ref": slow_host.url})
    cfg = gateway_config(tmp_path, fresh_upstream)
    add_task(cfg.store.path, "primary", body=body)
    student = ScriptedStudent(content='{"a": 1}')
    app = create_app(cfg, student_factory=lambda task, version: student)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://gw",
            headers={"authorization": f"Bearer {keys}"}) as c:
        chat = asyncio.create_task(c.post("/v1/chat/completions", json=body))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        health = await c.get("/healthz")
        health_s = time.perf_counter() - started
        r = await chat
    assert health.status_code == 200 and health_s < 1.0
    assert slow_host.hits == 0
    assert student.calls == 1 and r.status_code == 200
    assert r.headers["x-slimgate-backend"] == "teacher"  # the unverifiable answer fell back
