"""Security: a client's JSON schema cannot make the gateway fetch URLs or hang on a regex.

Schemas in `response_format` and tool parameters are the client's. A remote `$ref` is never
fetched (it makes the answer unverifiable: the teacher serves); a catastrophic `pattern`
is cut off by the regex timeout; an invalid pattern is the client's 400; and the whole
check runs off the event loop, so `/healthz` answers while a contract is being checked.
Nothing here is timed: a check that hangs is caught by a generous bound, one that blocks the
loop by the order in which things happen.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from gateway.app import create_app
from policies.contract import check_contract
from tests.fake_upstream import FakeUpstream
from tests.helpers import ScriptedStudent, add_task, gateway_config


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


def _bounded(fn: Any, limit_s: float = 60.0) -> Any:
    """Run fn in a daemon thread; fail (instead of hanging the suite) past limit_s."""
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    worker.start()
    worker.join(limit_s)
    assert not worker.is_alive(), f"contract check still running after {limit_s}s"
    return out[0]


def test_remote_ref_is_never_fetched_and_is_a_contract_failure(
    slow_host: SlowSchemaHost,
) -> None:
    body = _schema_body({"$ref": slow_host.url})
    violation = _bounded(lambda: check_contract(body, _answer('{"a": 1}')))
    assert slow_host.hits == 0  # the host counts a request as it arrives: none was made
    assert violation is not None and violation.code == "unverifiable"
    assert "$ref" in violation.message  # why: it names the reference it would not fetch


_CATASTROPHIC = """
import json, sys
from policies.contract import check_contract
body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {
    "type": "json_schema", "json_schema": {"name": "s", "schema": json.loads(sys.argv[1])}}}
v = check_contract(body, {"role": "assistant", "content": sys.argv[2]})
print(json.dumps([v.code, v.message] if v else [None, None]))
"""


def _check_in_subprocess(schema: dict[str, Any], answer: str) -> tuple[str | None, str | None]:
    """(code, message) of the check, in a child process: a regex that holds the GIL would
    otherwise hang the suite. Without a cut-off `^(a|aa)+$` on 60 characters runs for hours;
    the 120 s bound only keeps a broken build from hanging, it is not what is tested."""
    import json
    import subprocess
    import sys

    try:
        out = subprocess.run([sys.executable, "-c", _CATASTROPHIC, json.dumps(schema), answer],
                             capture_output=True, text=True, timeout=120, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("the contract check was still running after 120 s: the regex is not cut off")
    code, message = json.loads(out.stdout)
    return code, message


def test_catastrophic_pattern_is_cut_off() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string",
                                                      "pattern": "^(a|aa)+$"}}}
    code, message = _check_in_subprocess(schema, '{"id": "' + "a" * 60 + 'b"}')
    assert code == "unverifiable" and message is not None
    assert "took over" in message  # cut off by the regex timeout, not failed for another reason
    # patternProperties, and the patterns additionalProperties consults, are bounded too
    schema = {"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}},
              "additionalProperties": False}
    code, message = _check_in_subprocess(schema, '{"' + "a" * 60 + 'b": 1}')
    assert code == "unverifiable" and message is not None and "took over" in message
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


class HeldCheck:
    """Stands in for `policies.contract.schema_error` (then calls it): a contract check waits
    inside it until the test releases it, so the test holds one check in flight. A check
    running on the event loop would hold the loop too, and the test could never release it:
    it is released by its own bound then, and says so."""

    def __init__(self, real: Any, bound_s: float = 60.0) -> None:
        self.real, self.bound_s = real, bound_s
        self.entered, self.release = threading.Event(), threading.Event()
        self.released_by_the_test: bool | None = None

    def __call__(self, schema: Any, instance: Any) -> Any:
        self.entered.set()
        if self.released_by_the_test is None:
            self.released_by_the_test = self.release.wait(self.bound_s)
        return self.real(schema, instance)


async def test_checking_a_contract_never_stalls_the_event_loop(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, slow_host: SlowSchemaHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import policies.contract

    held = HeldCheck(policies.contract.schema_error)
    monkeypatch.setattr(policies.contract, "schema_error", held)
    body = _schema_body({"$ref": slow_host.url})
    # the deadline on a check is not what this test is about: far past the hold
    cfg = gateway_config(tmp_path, fresh_upstream, students={"contract_timeout_s": 600})
    add_task(cfg.store.path, "primary", body=body)
    student = ScriptedStudent(content='{"a": 1}')
    app = create_app(cfg, student_factory=lambda task, version: student)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://gw",
            headers={"authorization": f"Bearer {keys}"}) as c:
        chat = asyncio.create_task(c.post("/v1/chat/completions", json=body))
        # (waited for in a thread: on the loop, this wait would itself block it)
        assert await asyncio.to_thread(held.entered.wait, 60), "no contract check started"
        health = await c.get("/healthz")  # while the student's answer is being checked
        assert health.status_code == 200
        assert not chat.done()
        held.release.set()
        r = await chat
    assert held.released_by_the_test, "the check held the event loop: /healthz waited for it"
    assert slow_host.hits == 0
    assert student.calls == 1 and r.status_code == 200
    assert r.headers["x-slimgate-backend"] == "teacher"  # the unverifiable answer fell back
