"""Shared rate limits through the real Redis on 127.0.0.1:6379: replicas admit N requests in
total, not N each; a Redis that does not answer leaves each replica limiting on its own."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import ConfigError, RateLimitConfig, parse_config
from gateway.errors import RateLimited
from gateway.offline.local import free_port
from gateway.ratelimit import RateLimiter
from gateway.ratelimit_redis import RedisRateLimiter, build_limiter
from tests.fake_upstream import FakeUpstream
from tests.helpers import REDIS_URL, chat, gateway_config, redis_up, running_client

# Under CI (.ci/run starts a Redis) a missing Redis is a failure, not a skip.
pytestmark = pytest.mark.skipif(not redis_up() and not os.environ.get("CI"),
                                reason="no Redis on 127.0.0.1:6379")


@pytest.fixture
def prefix() -> str:
    return f"slimgate-test:{uuid.uuid4().hex}:"  # nothing shared with another test or run


def limits(prefix: str, **kw: object) -> RateLimitConfig:
    return RateLimitConfig.model_validate({"redis_url": REDIS_URL, "redis_prefix": prefix, **kw})


@pytest.fixture
async def replicas(prefix: str) -> AsyncIterator[list[RateLimiter]]:
    pair = [build_limiter(limits(prefix, requests_per_minute=5)) for _ in range(2)]
    yield pair
    for rl in pair:
        await rl.aclose()


async def admitted(rl: RateLimiter, key: str) -> bool:
    try:
        await rl.admit(key)
        return True
    except RateLimited:
        return False


async def test_two_replicas_share_one_limit(replicas: list[RateLimiter]) -> None:
    a, b = replicas
    assert isinstance(a, RedisRateLimiter)
    results = [await admitted(rl, "key-1") for _ in range(6) for rl in (a, b)]
    assert sum(results) == 5  # 5 per minute in all, not 5 per replica
    assert results[:5] == [True] * 5
    with pytest.raises(RateLimited) as info:
        await b.admit("key-1")
    assert int(info.value.headers["retry-after"]) >= 1
    assert await admitted(a, "key-2")  # another key has its own bucket


async def test_tokens_charged_on_one_replica_block_the_other(prefix: str) -> None:
    a, b = (build_limiter(limits(prefix, tokens_per_minute=600)) for _ in range(2))
    try:
        await a.admit("k")
        await a.charge_tokens("k", 1200)  # the answer served by replica a puts the key in debt
        with pytest.raises(RateLimited, match="Token rate limit"):
            await b.admit("k")
    finally:
        await a.aclose()
        await b.aclose()


async def test_buckets_expire_once_full_again(replicas: list[RateLimiter], prefix: str) -> None:
    import redis.asyncio as aioredis

    await replicas[0].admit("k")
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        ttl_ms = await r.pttl(prefix + "k")
        # one request of 5/min refills in 12 s; the key lives that long (+1 s), not forever
        assert 0 < ttl_ms <= 13_000
    finally:
        await r.aclose()


async def test_unreachable_redis_limits_per_replica(
    prefix: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import CollectorRegistry

    monkeypatch.setenv("SLIMGATE_TEST_REDIS_PASSWORD", "redis-secret-pw-123")
    registry = CollectorRegistry()
    cfg = RateLimitConfig.model_validate({
        "requests_per_minute": 2,
        "redis_url": f"redis://slimuser@127.0.0.1:{free_port()}/0?socket_keepalive=true",
        "redis_password_env": "SLIMGATE_TEST_REDIS_PASSWORD", "redis_prefix": prefix})
    rl = build_limiter(cfg, registry)
    try:
        with caplog.at_level(logging.WARNING, logger="slimgate.ratelimit"):
            results = [await admitted(rl, "k") for _ in range(3)]
        assert results == [True, True, False]  # never unlimited: this replica's own buckets
        assert "limiting per replica" in caplog.text
        assert "redis-secret-pw-123" not in caplog.text
        # the URL is logged without its userinfo and query
        assert "slimuser" not in caplog.text and "socket_keepalive" not in caplog.text
        assert registry.get_sample_value("slimgate_ratelimit_local_fallbacks_total") == 3
    finally:
        await rl.aclose()


@pytest.mark.parametrize("url", ["redis://:hunter2pw@127.0.0.1:6379/0",
                                 "redis://user:hunter2pw@127.0.0.1:6379/0",
                                 "redis://127.0.0.1:6379/0?password=hunter2pw",
                                 # percent-encoded: redis-py decodes both before using them
                                 "redis://127.0.0.1:6379/0?pass%77ord=hunter2pw",
                                 "redis://127.0.0.1:6379/0?db=0&PASSWORD%3D=x&pass%2577ord=hunter2pw",
                                 "redis://user%3Ahunter2pw@127.0.0.1:6379/0"])
def test_password_in_the_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"server": {"rate_limit": {"requests_per_minute": 1, "redis_url": url}}})
    assert "redis_password_env" in str(info.value)
    assert "hunter2pw" not in str(info.value)


def test_missing_password_variable_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIMGATE_TEST_NO_SUCH_VAR", raising=False)
    with pytest.raises(ConfigError, match="SLIMGATE_TEST_NO_SUCH_VAR"):
        build_limiter(limits("p:", requests_per_minute=1,
                             redis_password_env="SLIMGATE_TEST_NO_SUCH_VAR"))


async def test_two_gateways_share_the_limit(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, prefix: str
) -> None:
    rate = {"requests_per_minute": 3, "redis_url": REDIS_URL, "redis_prefix": prefix}
    server = {"api_keys_env": "SLIMGATE_TEST_KEYS", "rate_limit": rate}
    one = gateway_config(tmp_path / "a", fresh_upstream, server=server)
    two = gateway_config(tmp_path / "b", fresh_upstream, server=server)
    async with running_client(one) as a, running_client(two) as b:
        codes = []
        for c in (a, b, a, b, a, b):
            r = await c.post("/v1/chat/completions", json=chat("x"),
                             headers={"authorization": f"Bearer {keys}"})
            codes.append(r.status_code)
        assert codes == [200, 200, 200, 429, 429, 429]
        other = await b.post("/v1/chat/completions", json=chat("x"),
                             headers={"authorization": "Bearer sk-gw-test-2"})
        assert other.status_code == 200


@pytest.mark.slow
def test_two_served_gateways_share_the_limit(tmp_path: Path, prefix: str) -> None:
    import httpx

    from tests.served import spawn_gateway, start_upstream_process, wait_ready, write_config

    upstream, url = start_upstream_process()
    procs = [upstream]
    try:
        ports = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            port = free_port()
            while port in ports:  # neither is listening yet: the OS may offer a port twice
                port = free_port()
            cfg = write_config(tmp_path / name, url, port, extra=(
                "[worker]\nembedded = false\n\n[server.rate_limit]\nrequests_per_minute = 3\n"
                f'redis_url = "{REDIS_URL}"\nredis_prefix = "{prefix}"\n'))
            procs.append(spawn_gateway(cfg, tmp_path / name / "gw.log",
                                       {"SERVED_TEST_KEYS": "sk-served-1"}))
            ports.append(port)
        for name, proc, port in zip(("a", "b"), procs[1:], ports, strict=True):
            wait_ready(proc, port, tmp_path / name / "gw.log")  # both started together
        codes = [httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                            json={**chat("x"), "model": "m"},
                            headers={"authorization": "Bearer sk-served-1"},
                            timeout=20).status_code
                 for _ in range(3) for port in ports]
        assert codes == [200, 200, 200, 429, 429, 429]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
