"""Token limits hold for streams a client closes early: a request reserves its tokens at
admission (prompt / 4 + its output cap) and keeps at least that reservation when it is
aborted, in memory and through Redis, on chat completions and the Responses API."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.errors import RateLimited
from gateway.ratelimit import RateLimiter
from tests.fake_upstream import FakeUpstream
from tests.helpers import REDIS_URL, gateway_config, redis_up, running_client

TEXT = "fault:slowrest " + "w" * 1985  # ~500 prompt tokens; the stream stalls after a word
LIMITERS = ["memory", pytest.param("redis", marks=pytest.mark.skipif(
    not redis_up(), reason="no Redis on 127.0.0.1:6379"))]


def _rate(kind: str) -> dict[str, Any]:
    rate: dict[str, Any] = {"tokens_per_minute": 2000}
    if kind == "redis":
        rate |= {"redis_url": REDIS_URL, "redis_prefix": f"slimgate-test:{uuid.uuid4().hex}:"}
    return rate


async def _closed_after_first_event(app: Any, path: str, body: dict[str, Any], key: str) -> int:
    """POST `body` as uvicorn would, and disconnect once the first body bytes arrive; the
    response's status."""
    got_bytes = asyncio.Event()
    status: list[int] = []
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": orjson.dumps(body), "more_body": False}
        await got_bytes.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message.get("body"):
            got_bytes.set()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {key}".encode())],
             "client": ("127.0.0.1", 40000), "server": ("gw", 80)}
    await app(scope, receive, send)
    return status[0]


@pytest.mark.parametrize("kind", LIMITERS)
@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "gpt-test", "stream": True, "max_tokens": 10,
                              "messages": [{"role": "user", "content": TEXT}]}),
    ("/v1/responses", {"model": "gpt-test", "stream": True, "max_output_tokens": 10,
                       "input": TEXT}),
])
async def test_streams_closed_early_are_charged(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, kind: str, path: str,
    body: dict[str, Any],
) -> None:
    """Before: eight such streams passed a 2,000 tokens/min limit, each charged 0 tokens."""
    server = {"api_keys_env": "SLIMGATE_TEST_KEYS", "rate_limit": _rate(kind)}
    async with running_client(gateway_config(tmp_path, fresh_upstream, server=server)) as c:
        codes = [await _closed_after_first_event(c.app, path, body, keys)  # type: ignore[attr-defined]
                 for _ in range(8)]
        plain = await c.post(path, json={**body, "stream": False},
                             headers={"authorization": f"Bearer {keys}"})
        other_key = await c.post(path, json={**body, "stream": False},
                                 headers={"authorization": "Bearer sk-gw-test-2"})
    # ~520 tokens reserved each (2,000 chars / 4 + 10): three fit, then the bucket is short
    assert codes[:3] == [200, 200, 200]
    assert 429 in codes
    assert plain.status_code == 429
    assert plain.json()["error"]["message"].startswith("Token rate limit")
    assert other_key.status_code == 200


@pytest.mark.parametrize("kind", LIMITERS)
async def test_plain_requests_are_settled_with_their_usage(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, kind: str
) -> None:
    """A reservation larger than the usage is given back: one request reserving ~1,525
    tokens and using ~1,000 leaves ~1,000 of 2,000, enough for one more of ~535."""
    server = {"api_keys_env": "SLIMGATE_TEST_KEYS", "rate_limit": _rate(kind)}
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "w" * 2000}]}
    async with running_client(gateway_config(tmp_path, fresh_upstream, server=server)) as c:
        c.headers["authorization"] = f"Bearer {keys}"
        codes = [(await c.post("/v1/chat/completions", json={**body, "max_tokens": cap}))
                 .status_code for cap in (1000, 10, 10)]
    assert codes == [200, 200, 429]


def test_reservation_refused_when_it_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.ratelimit.time.monotonic", lambda: 0.0)
    rl = RateLimiter(tokens_per_minute=600)
    rl.reserve("a", 10_000)  # more than the limit: a full bucket, never refused forever
    rl.charge("a", -400)  # settled: 200 used of the 600 reserved
    with pytest.raises(RateLimited) as info:
        rl.reserve("a", 500)  # 400 left
    assert info.value.headers["retry-after"] == "10"  # 100 tokens at 10 per second
    rl.reserve("a", 400)
