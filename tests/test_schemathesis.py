"""Property tests from the OpenAPI spec (schemathesis), and a fuzz of the admin API.

Every operation the spec documents, the OpenAI endpoints and the admin API included, is
called with generated valid and invalid inputs (a few examples each, so the suite stays
fast): nothing may answer 5xx other than an upstream's own failure (502/503/504), and every
JSON error is OpenAI's envelope. The admin fuzz sends random task ids (newlines, '..',
unicode, percent-escapes) and random bodies with an admin key.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config

GATEWAY_KEY, ADMIN_KEY, METRICS_KEY = "sk-gw-fuzz", "sk-admin-fuzz", "sk-metrics-fuzz"
UPSTREAM_STATUSES = {502, 503, 504}  # the (fake) provider's failures, classified


def _build_app() -> Any:
    """At import: schemathesis loads the spec (and starts the app's lifespan) when the module
    is collected. Env var names of its own, so no other test sees these keys."""
    os.environ.update({"SLIMGATE_FUZZ_KEYS": GATEWAY_KEY, "SLIMGATE_FUZZ_ADMIN": ADMIN_KEY,
                       "SLIMGATE_FUZZ_METRICS": METRICS_KEY})
    upstream = FakeUpstream(hang_s=1.0).start()
    tmp = Path(tempfile.mkdtemp(prefix="slimgate-fuzz-"))
    cfg = gateway_config(tmp, upstream, server={
        "api_keys_env": "SLIMGATE_FUZZ_KEYS", "admin_keys_env": "SLIMGATE_FUZZ_ADMIN",
        "metrics_keys_env": "SLIMGATE_FUZZ_METRICS"})
    return create_app(cfg)


fuzz_app = _build_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
# Generated cases only: the coverage phase alone makes ~640 cases for the chat endpoint.
schema.config.phases.coverage.enabled = False
schema.config.phases.examples.enabled = False


def _auth(path: str) -> dict[str, str]:
    if path.startswith(("/admin", "/dashboard", "/report")):
        return {"authorization": f"Bearer {ADMIN_KEY}"}
    if path == "/metrics":
        return {"authorization": f"Bearer {METRICS_KEY}"}
    return {"authorization": f"Bearer {GATEWAY_KEY}"}


def _check(status: int, content_type: str, body: Any) -> None:
    assert status < 500 or status in UPSTREAM_STATUSES, body
    if status >= 400 and content_type.startswith("application/json"):
        err = body["error"]
        assert {"message", "type", "param", "code"} <= set(err)


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_documented_operation(case: Any) -> None:
    response = case.call(headers=_auth(case.path))
    content_type = (response.headers.get("content-type") or [""])[0]
    body = response.json() if content_type.startswith("application/json") and (
        response.content) else None
    _check(response.status_code, content_type, body)


_task_ids = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["foo\n", "..", "../../etc", "a..b", "%2e%2e", "t-orders", "x" * 65,
                     "é", "a b", "a/b", "\x00"]),
)
_bodies = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["reason", "to", "x", "__proto__"]),
                    st.one_of(st.text(max_size=20), st.integers(), st.none(),
                              st.sampled_from(["teacher", "student"])), max_size=3),
    st.binary(max_size=40),
)


class LoopThread:
    """The app's lifespan held open in an event loop of its own, for sync hypothesis tests."""

    def __init__(self, app: Any) -> None:
        import threading

        import httpx

        self.loop = asyncio.new_event_loop()
        self._app = app
        self._stop: asyncio.Event | None = None
        self.client: httpx.AsyncClient | None = None
        ready = threading.Event()

        async def hold() -> None:
            self._stop = asyncio.Event()
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://gw",
                    headers=_auth("/admin")) as client:
                self.client = client
                ready.set()
                await self._stop.wait()

        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(hold(),),
                                        daemon=True)
        self._thread.start()
        ready.wait(30)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def admin_app() -> Any:
    held = LoopThread(_build_app())
    yield held
    held.close()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(task=_task_ids, action=st.sampled_from(["promote", "rollback", "pin", "unpin"]),
       body=_bodies, limit=st.integers(-10, 10_000))
def test_admin_api_fuzz(admin_app: LoopThread, task: str, action: str, body: Any,
                        limit: int) -> None:
    from urllib.parse import quote

    client = admin_app.client
    assert client is not None
    path = f"/admin/tasks/{quote(task, safe='')}/{action}"
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    for r in (admin_app.run(client.post(path, **kwargs)),
              admin_app.run(client.get("/admin/audit", params={"task": task, "limit": limit}))):
        content_type = r.headers.get("content-type", "")
        data = r.json() if content_type.startswith("application/json") else None
        _check(r.status_code, content_type, data)
        assert r.status_code >= 400 or data is not None  # success is JSON too
