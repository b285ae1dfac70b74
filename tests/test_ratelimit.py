"""Per-key rate limits answer 429 with Retry-After; other keys are unaffected. Failed
authentications are limited per client address, which comes from X-Forwarded-For only when
the peer is a trusted proxy, and never lock out a valid key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config
from gateway.errors import RateLimited
from gateway.ratelimit import RateLimiter
from tests.fake_upstream import FakeUpstream
from tests.helpers import chat, gateway_config, running_client


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


WRONG = {"authorization": "Bearer sk-wrong"}


async def test_one_keyless_client_locks_out_no_one(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a load balancer every client shares its address: 30 wrong keys from one of
    them leave the other clients' gateway and admin keys working."""
    monkeypatch.setenv("SLIMGATE_ADMIN_KEYS", "sk-admin-test")
    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        codes = [(await c.post("/v1/chat/completions", json=chat("x"), headers=WRONG))
                 .status_code for _ in range(31)]
        gateway = await c.post("/v1/chat/completions", json=chat("x"),
                               headers={"authorization": f"Bearer {keys}"})
        admin = await c.get("/admin/tasks", headers={"authorization": "Bearer sk-admin-test"})
    assert codes == [401] * 30 + [429]
    assert gateway.status_code == 200 and admin.status_code == 200


def _xff(*hops: str) -> dict[str, str]:
    return {**WRONG, "x-forwarded-for": ", ".join(hops)}


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    """The in-process client connects from 127.0.0.1. Trusted, its X-Forwarded-For names the
    client: the right-most hop that is not a trusted proxy, whatever the client prepended."""
    server = {"api_keys_env": "SLIMGATE_TEST_KEYS", "auth_failures_per_minute": 3,
              "trusted_proxies": ["127.0.0.0/8", "10.1.0.0/16"]}
    async with running_client(gateway_config(tmp_path, fresh_upstream, server=server)) as c:
        async def code(headers: dict[str, str]) -> int:
            return (await c.get("/v1/models", headers=headers)).status_code

        # a client varying its own left-most entries is still 198.51.100.7 (10.1.2.3: our LB)
        spoofer = [await code(_xff(f"192.0.2.{i}", "198.51.100.7", "10.1.2.3"))
                   for i in range(4)]
        other_client = await code(_xff("203.0.113.9"))
        garbage = [await code(_xff("not-an-ip")) for _ in range(4)]  # counted for 127.0.0.1
    assert spoofer == [401, 401, 401, 429]
    assert other_client == 401
    assert garbage == [401, 401, 401, 429]

    untrusted = {**server, "trusted_proxies": ["10.0.0.0/8"]}  # the peer is not trusted
    async with running_client(gateway_config(tmp_path, fresh_upstream, server=untrusted)) as c:
        codes = [(await c.get("/v1/models", headers=_xff(f"192.0.2.{i}"))).status_code
                 for i in range(4)]
    assert codes == [401, 401, 401, 429]


@pytest.mark.parametrize("cidrs, where", [(["10.0.0.0/8", "nonsense"], "[1]"),
                                           (["10.0.0.1/8"], "[0]"), (["::1/129"], "[0]")])
def test_trusted_proxies_must_be_cidrs(cidrs: list[str], where: str) -> None:
    with pytest.raises(ConfigError, match=rf"server\.trusted_proxies\{where}: .*CIDR"):
        parse_config({"server": {"trusted_proxies": cidrs}})


def test_served_gateway_ignores_forwarded_for_by_default(tmp_path: Path) -> None:
    """A real `slimgate serve` on 127.0.0.1 (as behind Docker's port proxy): uvicorn believed
    X-Forwarded-For from 127.0.0.1, so 40 wrong keys with varying addresses were never limited."""
    import httpx

    from gateway.offline.local import free_port
    from tests.served import start_gateway, start_upstream_process, write_config

    upstream, url = start_upstream_process()
    procs = [upstream]
    try:
        port = free_port()
        cfg = write_config(tmp_path, url, port)
        procs.append(start_gateway(cfg, port, tmp_path / "gw.log",
                                   {"SERVED_TEST_KEYS": "sk-served-1"}))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
            codes = [c.get("/v1/models", headers=_xff(f"192.0.2.{i}")).status_code
                     for i in range(40)]
            valid = c.get("/v1/models", headers={"authorization": "Bearer sk-served-1"})
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    assert codes == [401] * 30 + [429] * 10
    assert valid.status_code == 200
