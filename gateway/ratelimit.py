"""Per-key rate limits: requests and tokens per minute, as token buckets.

Each gateway key (or, on an open gateway, each client address) has one bucket of requests
and one of tokens, refilled continuously. A request is refused with 429 and a Retry-After
when its request bucket is empty, or when the tokens it may spend (`reserve`: an estimate
from its prompt and its output cap) do not fit in its token bucket; after the answer the
reservation is settled with the true usage (`charge` of the difference, a refund when
negative), and a stream the client closed early keeps at least its reservation.
`RateLimiter` keeps the buckets in memory, per replica (N
replicas: up to N times the limit); with `server.rate_limit.redis_url` they are shared
through Redis (`gateway/ratelimit_redis.py`), one limit for every replica.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway.errors import RateLimited, Unauthorized

T = TypeVar("T")

_MAX_BUCKETS = 10_000  # least recently seen callers are forgotten beyond this


@dataclass(slots=True)
class _Bucket:
    requests: float
    tokens: float
    stamp: float


def refusal(kind: str, limit: int, wait_s: float) -> RateLimited:
    """The 429 for a request (`kind` "Request") or token ("Token") limit reached."""
    return RateLimited(f"{kind} rate limit of {limit} per minute reached for this key.",
                       headers={"retry-after": str(max(1, math.ceil(wait_s)))})


class RateLimiter:
    """Buckets in this process's memory. `take`/`charge` are the synchronous core; the
    request path calls `admit`/`charge_tokens`, which a shared limiter overrides."""

    def __init__(self, requests_per_minute: int = 0, tokens_per_minute: int = 0) -> None:
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self.rpm or self.tpm)

    def _bucket(self, key: str, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = _Bucket(float(self.rpm), float(self.tpm), now)
            self._buckets[key] = b
            if len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = now - b.stamp
            b.requests = min(float(self.rpm), b.requests + elapsed * self.rpm / 60)
            b.tokens = min(float(self.tpm), b.tokens + elapsed * self.tpm / 60)
            b.stamp = now
        return b

    def take(self, key: str) -> None:
        """Take one request from the caller's bucket, or raise 429."""
        if not self.enabled:
            return
        b = self._bucket(key, time.monotonic())
        if self.tpm and b.tokens < 0:
            raise refusal("Token", self.tpm, -b.tokens * 60 / self.tpm)
        if self.rpm:
            if b.requests < 1:
                raise refusal("Request", self.rpm, (1 - b.requests) * 60 / self.rpm)
            b.requests -= 1

    def reserve(self, key: str, tokens: int) -> None:
        """Take `tokens` (at most a full bucket) from the caller's bucket, or raise 429 when
        they do not fit."""
        if not self.tpm:
            return
        tokens = min(tokens, self.tpm)
        b = self._bucket(key, time.monotonic())
        if b.tokens < tokens:
            raise refusal("Token", self.tpm, (tokens - b.tokens) * 60 / self.tpm)
        b.tokens -= tokens

    def charge(self, key: str, tokens: int) -> None:
        """Take `tokens` more (a debt blocks the next request), or give back `-tokens`."""
        if self.tpm and tokens:
            b = self._bucket(key, time.monotonic())
            b.tokens = min(float(self.tpm), b.tokens - tokens)

    async def admit(self, key: str) -> None:
        self.take(key)

    async def reserve_tokens(self, key: str, tokens: int) -> None:
        self.reserve(key, tokens)

    async def charge_tokens(self, key: str, tokens: int) -> None:
        self.charge(key, tokens)

    def charge_soon(self, key: str, tokens: int) -> None:
        """`charge_tokens` without waiting: for a stream's end, where the request's task
        may already be cancelled (the client went away) and could not wait for it."""
        self.charge(key, tokens)

    async def aclose(self) -> None:
        return None


class AuthFailures:
    """Wrong or missing keys per client address: past `per_minute` in the last minute, a
    further failed attempt from that address is answered 429 instead of 401. The key is
    always checked first, so a valid key is never refused for failures from its address
    (clients behind one proxy or NAT share it). Guards gateway keys, admin keys (API and
    `/dashboard?key=`) and metrics keys alike."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def guard(self, address: str, check: Callable[[], T]) -> T:
        try:
            return check()
        except Unauthorized as e:
            failure = e
        now = time.monotonic()
        recent = [t for t in self._failures.get(address, ()) if now - t < 60]
        if len(recent) >= self.per_minute:
            wait = max(1, math.ceil(60 - (now - recent[0])))
            raise RateLimited(
                f"Too many failed authentications from this address; retry after {wait}s.",
                headers={"retry-after": str(wait)}, code="auth_rate_limited")
        recent.append(now)
        self._failures[address] = recent
        self._failures.move_to_end(address)
        if len(self._failures) > _MAX_BUCKETS:
            self._failures.popitem(last=False)
        raise failure
