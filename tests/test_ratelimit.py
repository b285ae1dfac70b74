"""Per-key rate limits answer 429 with Retry-After; other keys are unaffected."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import RateLimited
from gateway.ratelimit import RateLimiter
from tests.conftest import gateway_config, running_client
from tests.fake_upstream import FakeUpstream
from tests.test_gateway_chat import chat


def test_request_bucket_refuses_then_refills(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("gateway.ratelimit.time.monotonic", lambda: now[0])
    rl = RateLimiter(requests_per_minute=2)
    rl.take("a")
    rl.take("a")
    with pytest.raises(RateLimited) as info:
        rl.take("a")
    assert info.value.headers["retry-after"] == "30"
    rl.take("b")  # another key has its own bucket
    now[0] += 30
    rl.take("a")


def test_token_debt_blocks_until_repaid(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("gateway.ratelimit.time.monotonic", lambda: now[0])
    rl = RateLimiter(tokens_per_minute=600)
    rl.take("a")
    rl.charge("a", 1200)  # one big answer puts the key 600 tokens in debt
    with pytest.raises(RateLimited, match="Token rate limit"):
        rl.take("a")
    now[0] += 61
    rl.take("a")


async def test_gateway_answers_429_per_key(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, server={
        "api_keys_env": "SLIMGATE_TEST_KEYS", "rate_limit": {"requests_per_minute": 3}})
    async with running_client(cfg) as c:
        c.headers["authorization"] = f"Bearer {keys}"
        codes = [(await c.post("/v1/chat/completions", json=chat("x"))).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await c.post("/v1/chat/completions", json=chat("x"))
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(r.headers["retry-after"]) >= 1
        other = await c.post("/v1/chat/completions", json=chat("x"),
                             headers={"authorization": "Bearer sk-gw-test-2"})
        assert other.status_code == 200
