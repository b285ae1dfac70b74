"""What a shared rate limit costs per request: admissions per second and their latency,
in memory and through Redis (one Lua script per admission), at concurrency 1 and 64.

Needs a Redis (default redis://127.0.0.1:6379/0); keys go under a fresh prefix and expire
by themselves. `PYTHONPATH=. python bench/ratelimit_bench.py [--redis URL] [-n N]`
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from gateway.config import RateLimitConfig
from gateway.ratelimit import RateLimiter
from gateway.ratelimit_redis import build_limiter
from policies.stats import percentile


async def run(limiter: RateLimiter, n: int, concurrency: int) -> tuple[float, float, float]:
    """(admissions per second, p50 ms, p99 ms) over n admissions spread over 100 keys."""
    latencies: list[float] = []

    async def one(i: int) -> None:
        t = time.perf_counter()
        await limiter.admit(f"key-{i % 100}")
        latencies.append((time.perf_counter() - t) * 1000)

    sem = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with sem:
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    return n / elapsed, percentile(latencies, 50) or 0.0, percentile(latencies, 99) or 0.0


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("-n", type=int, default=5000)
    args = p.parse_args()
    rpm = 10**9  # never refuses: this measures the cost of deciding, not the refusals
    limiters = {
        "memory": RateLimiter(rpm),
        "redis": build_limiter(RateLimitConfig(requests_per_minute=rpm, redis_url=args.redis,
                                               redis_prefix=f"bench:{uuid.uuid4().hex}:")),
    }
    print(f"{'limiter':8} {'conc':>5} {'admits/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, limiter in limiters.items():
        await run(limiter, 500, 64)  # connections opened, script loaded
        for concurrency in (1, 64):
            rate, p50, p99 = await run(limiter, args.n, concurrency)
            print(f"{name:8} {concurrency:>5} {rate:>10.0f} {p50:>8.3f} {p99:>8.3f}")
        await limiter.aclose()


if __name__ == "__main__":
    asyncio.run(main())
