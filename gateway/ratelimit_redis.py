"""Per-key rate limits shared by every replica, as token buckets in Redis.

One Lua script per admission (and, with a token limit, one to reserve the request's tokens
and one to settle them after the answer) refills, checks and takes in a single atomic step
on Redis's own clock, so replicas agree whatever their
clocks say. A bucket expires when it would be full again. If Redis does not answer, the
replica limits on its own (the in-memory buckets) until it does: never unlimited, at worst
N times the limit with N replicas (docs/reliability.md). `build_limiter` picks this one or
the local `gateway.ratelimit.RateLimiter` from the config.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from gateway.config import ConfigError, RateLimitConfig, redact_url
from gateway.ratelimit import RateLimiter, refusal

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("slimgate.ratelimit")

# KEYS[1]: the caller's bucket (hash r=requests left, t=tokens left, s=stamp).
# ARGV: rpm, tpm, take (1: admit a request; 2: reserve the tokens if they fit; 0: only
# charge them, a refund when negative), tokens.
# Returns {0} admitted, {1, wait} out of requests, {2, wait} in token debt or the reservation
# does not fit (wait: seconds, a string: Redis truncates Lua numbers to integers).
_SCRIPT = """
local now_pair = redis.call('TIME')
local now = tonumber(now_pair[1]) + tonumber(now_pair[2]) / 1000000
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local take, charge = tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'r', 't', 's')
local r, t, s = tonumber(b[1]) or rpm, tonumber(b[2]) or tpm, tonumber(b[3]) or now
local elapsed = math.max(0, now - s)
r = math.min(rpm, r + elapsed * rpm / 60)
t = math.min(tpm, t + elapsed * tpm / 60)
local verdict, wait = 0, 0
if take == 2 then
  if tpm > 0 and t < charge then
    verdict, wait = 2, (charge - t) * 60 / tpm
  else
    t = t - charge
  end
else
  t = math.min(tpm, t - charge)
end
if take == 1 then
  if tpm > 0 and t < 0 then
    verdict, wait = 2, -t * 60 / tpm
  elseif rpm > 0 and r < 1 then
    verdict, wait = 1, (1 - r) * 60 / rpm
  elseif rpm > 0 then
    r = r - 1
  end
end
redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(t), 's', tostring(now))
local full_in = 0
if rpm > 0 then full_in = math.max(full_in, (rpm - r) * 60 / rpm) end
if tpm > 0 then full_in = math.max(full_in, (tpm - t) * 60 / tpm) end
redis.call('PEXPIRE', KEYS[1], math.ceil(full_in * 1000) + 1000)
return {verdict, tostring(wait)}
"""

# After Redis fails, requests are limited locally for this long before Redis is tried
# again, so an outage costs one timeout per interval, not one per request.
_RETRY_AFTER_S = 5.0


class RedisRateLimiter(RateLimiter):
    """A `RateLimiter` whose buckets live in Redis; its own in-memory buckets are the
    fallback while Redis is unreachable."""

    def __init__(self, cfg: RateLimitConfig, registry: CollectorRegistry | None = None) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        super().__init__(cfg.requests_per_minute, cfg.tokens_per_minute)
        password = None
        if cfg.redis_password_env:
            password = os.environ.get(cfg.redis_password_env)
            if not password:
                raise ConfigError(f"server.rate_limit.redis_password_env names "
                                  f"'{cfg.redis_password_env}', which is not set")
        assert cfg.redis_url is not None
        self.where = redact_url(cfg.redis_url)  # what logs show: no userinfo, no query
        self._prefix = cfg.redis_prefix
        self._timeout = cfg.redis_timeout_s
        self._redis = aioredis.Redis.from_url(
            cfg.redis_url, password=password, socket_timeout=cfg.redis_timeout_s,
            socket_connect_timeout=cfg.redis_timeout_s, retry=Retry(NoBackoff(), 0))
        self._script = self._redis.register_script(_SCRIPT)
        self._down_until = 0.0  # monotonic time before which Redis is not tried again
        self._pending: set[asyncio.Task[None]] = set()  # settlements started by charge_soon
        self.fallbacks: Any = None
        if registry is not None:
            from prometheus_client import Counter

            self.fallbacks = Counter(
                "slimgate_ratelimit_local_fallbacks",
                "Rate-limit decisions made per replica because Redis did not answer.",
                registry=registry)

    async def _run(self, key: str, take: int, tokens: int) -> list[Any] | None:
        """The script's answer, or None when Redis is (recently) unreachable."""
        if time.monotonic() < self._down_until:
            return None
        try:
            async with asyncio.timeout(self._timeout * 2):
                out: list[Any] = await self._script(
                    keys=[self._prefix + key], args=[self.rpm, self.tpm, take, tokens])
        except Exception as e:  # connection refused, timeout, auth, script error: all alike
            self._down_until = time.monotonic() + _RETRY_AFTER_S
            log.warning("Redis for shared rate limits at %s did not answer (%s: %s); limiting "
                        "per replica for %.0fs", self.where, type(e).__name__, e, _RETRY_AFTER_S)
            return None
        if self._down_until:
            self._down_until = 0.0
            log.info("Redis for shared rate limits at %s answers again", self.where)
        return out

    async def admit(self, key: str) -> None:
        if not self.enabled:
            return
        out = await self._run(key, 1, 0)
        if out is None:
            if self.fallbacks is not None:
                self.fallbacks.inc()
            self.take(key)
            return
        verdict, wait = int(out[0]), float(out[1])
        if verdict == 2:
            raise refusal("Token", self.tpm, wait)
        if verdict == 1:
            raise refusal("Request", self.rpm, wait)

    async def reserve_tokens(self, key: str, tokens: int) -> None:
        if not self.tpm:
            return
        tokens = min(tokens, self.tpm)
        out = await self._run(key, 2, tokens)
        if out is None:
            self.reserve(key, tokens)
        elif int(out[0]) == 2:
            raise refusal("Token", self.tpm, float(out[1]))

    async def charge_tokens(self, key: str, tokens: int) -> None:
        if not self.tpm or not tokens:
            return
        if await self._run(key, 0, tokens) is None:
            self.charge(key, tokens)

    def charge_soon(self, key: str, tokens: int) -> None:
        if not self.tpm or not tokens:
            return
        task = asyncio.get_running_loop().create_task(self.charge_tokens(key, tokens))
        self._pending.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._pending.discard)

    async def aclose(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=self._timeout * 2)
        await self._redis.aclose()


def build_limiter(cfg: RateLimitConfig, registry: CollectorRegistry | None = None) -> RateLimiter:
    """The gateway's limiter: shared through Redis when `redis_url` is set, else local."""
    if cfg.redis_url and (cfg.requests_per_minute or cfg.tokens_per_minute):
        return RedisRateLimiter(cfg, registry)
    return RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)
