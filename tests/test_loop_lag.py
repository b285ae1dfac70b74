"""Event-loop lag and GC pauses on /metrics, the start-up heap frozen while the app runs, and
a request path that leaves no reference cycles for the collector.

On the real clock only lower bounds are asserted (a loop held 500 ms shows a lag over 100 ms):
a busy machine only adds lag, so it cannot fail them, and a monitor that misses stalls does.
What must be exact (no lag when idle, the on-CPU share, the max restarting at each scrape) is
asserted on a clock only the test moves.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from gateway.app import create_app
from tests.fake_upstream import FakeUpstream
from tests.helpers import METRICS_AUTH, gateway_config, running_client
from tests.served import ROOT, start_upstream_process


def sample(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not on /metrics"
    return float(m.group(1))


async def metrics(c: httpx.AsyncClient) -> str:
    r = await c.get("/metrics", headers=METRICS_AUTH)
    assert r.status_code == 200
    return r.text


async def test_a_blocked_loop_shows_as_lag(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        await asyncio.sleep(0.1)  # the monitor has taken samples
        before = await metrics(c)
        assert sample(before, "slimgate_event_loop_lag_seconds_count") > 0
        slow_before = sample(before, "slimgate_event_loop_lag_seconds_count") - sample(
            before, "slimgate_event_loop_lag_seconds_bucket", '{le="0.1"}')

        time.sleep(0.5)  # a blocking call on the event loop, as a bad handler would make
        await asyncio.sleep(0.05)  # the monitor wakes, late

        after = await metrics(c)
        assert sample(after, "slimgate_event_loop_lag_max_seconds") > 0.1
        slow_after = sample(after, "slimgate_event_loop_lag_seconds_count") - sample(
            after, "slimgate_event_loop_lag_seconds_bucket", '{le="0.1"}')
        assert slow_after >= slow_before + 1


class FakeClocks:
    """The lag monitor's two clocks (`time.perf_counter`, `time.thread_time`), moved only by
    the test: its 10 ms sleeps stay real, so it keeps sampling, and sees exactly the stalls
    the test makes."""

    def __init__(self) -> None:
        self.wall = self.cpu = 1000.0

    def perf_counter(self) -> float:
        return self.wall

    def thread_time(self) -> float:
        return self.cpu


async def test_lag_arithmetic_on_a_clock_the_test_moves(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle loop shows no lag; a 0.5 s stall shows as 0.49 s (a stall reads up to one
    10 ms interval short), the part of it the loop's thread ran as its on-CPU lag; the max
    restarts at each scrape. The test moves the clocks while the monitor sleeps (it runs on
    the same loop), so each stall falls inside exactly one of its samples."""
    import gateway.loop_lag

    clocks = FakeClocks()
    monkeypatch.setattr(gateway.loop_lag, "time", clocks)

    def slow(text: str) -> float:  # samples over 100 ms
        return sample(text, "slimgate_event_loop_lag_seconds_count") - sample(
            text, "slimgate_event_loop_lag_seconds_bucket", '{le="0.1"}')

    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        for _ in range(6000):  # until the monitor has sampled (bounded: no hang if it never)
            if sample(await metrics(c), "slimgate_event_loop_lag_seconds_count") > 0:
                break
            await asyncio.sleep(0.01)
        idle = await metrics(c)
        assert sample(idle, "slimgate_event_loop_lag_seconds_count") > 0
        assert sample(idle, "slimgate_event_loop_lag_max_seconds") == 0.0
        assert sample(idle, "slimgate_event_loop_lag_on_cpu_max_seconds") == 0.0
        assert slow(idle) == 0

        for wall, cpu, lag, on_cpu in [(0.5, 0.0, 0.49, 0.0),  # a blocking call: off the CPU
                                       (0.3, 0.3, 0.29, 0.29),  # a busy loop
                                       (0.4, 0.1, 0.39, 0.09)]:  # both
            before = await metrics(c)
            clocks.wall += wall
            clocks.cpu += cpu
            await asyncio.sleep(0.02)  # the monitor's timer is due first: it wakes, "late"
            after = await metrics(c)
            assert sample(after, "slimgate_event_loop_lag_max_seconds") == pytest.approx(lag)
            assert sample(after, "slimgate_event_loop_lag_on_cpu_max_seconds") == pytest.approx(
                on_cpu)
            assert slow(after) == slow(before) + 1  # one sample, one stall
        # The max restarts at each scrape: the stall is reported once, not forever.
        await asyncio.sleep(0.02)
        again = await metrics(c)
        assert sample(again, "slimgate_event_loop_lag_max_seconds") == 0.0
        assert sample(again, "slimgate_event_loop_lag_on_cpu_max_seconds") == 0.0


async def test_collections_are_timed_by_generation(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        full = 'slimgate_gc_pause_seconds_count{generation="2"}'
        before = sample(await metrics(c), full)
        gc.collect()
        gc.collect()
        after = await metrics(c)
        assert sample(after, full) == before + 2
        assert sample(after, "slimgate_gc_pause_max_seconds") > 0


async def test_a_busy_loop_shows_as_lag_on_cpu(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        await asyncio.sleep(0.05)
        await metrics(c)  # restart the max gauges
        start = time.thread_time()
        while time.thread_time() - start < 0.3:  # 300 ms of CPU on the loop, however slow
            pass
        await asyncio.sleep(0.05)
        assert sample(await metrics(c), "slimgate_event_loop_lag_on_cpu_max_seconds") > 0.1


@pytest.mark.gc_freeze
@pytest.mark.parametrize("setting", ["1", "0"])
async def test_the_startup_heap_is_frozen_while_serving(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, setting: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLIMGATE_GC_FREEZE", setting)
    thresholds = gc.get_threshold()
    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        r = await c.post("/v1/chat/completions", headers={"authorization": f"Bearer {keys}"},
                         json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 200
        if setting == "1":
            assert gc.get_freeze_count() > 100_000  # litellm and the app, not a handful
            assert gc.get_threshold() != thresholds
        else:
            assert gc.get_freeze_count() == 0
            assert gc.get_threshold() == thresholds
    # Shut down: the app's objects are collectable again, the thresholds restored.
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


async def asgi_post(app: Any, path: str, body: dict[str, Any], key: str) -> int:
    """One request straight into the ASGI app, as uvicorn makes it: no HTTP client whose own
    objects would be cyclic garbage (httpx's Response and its stream refer to each other)."""
    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"gw"), (b"authorization", f"Bearer {key}".encode()),
                         (b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode())]}
    body_sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
# (name, path, body, expected status): the request paths checked for reference cycles
PATHS = [
    ("chat", "/v1/chat/completions", CHAT, 200),
    ("stream", "/v1/chat/completions", {**CHAT, "stream": True}, 200),
    ("responses", "/v1/responses", {"model": "gpt-test", "input": "hello"}, 200),
    ("unknown-model", "/v1/chat/completions", {**CHAT, "model": "no-such-model"}, 404),
    ("upstream-error", "/v1/chat/completions", {**CHAT, "model": "backup", "messages": [
        {"role": "user", "content": "fault:500"}]}, 502),
    ("upstream-400", "/v1/chat/completions", {**CHAT, "messages": [
        {"role": "user", "content": "fault:400"}]}, 400),  # the client's fault: not retried
    ("responses-400", "/v1/responses", {"model": "gpt-test", "input": "fault:400"}, 400),
]
CYCLE_KEY = "sk-cycles"


async def cyclic_garbage(upstream_url: str, tmp: Path) -> dict[str, dict[str, int]]:
    """For each of PATHS: 30 requests with the collector off, then one collection that keeps
    what it finds (DEBUG_SAVEALL): the objects only a collection would have freed, by type."""
    upstream = cast(FakeUpstream, SimpleNamespace(base_url=upstream_url))  # all it reads
    app = create_app(gateway_config(tmp, upstream))
    found = {}
    async with app.router.lifespan_context(app):
        for name, path, body, status in PATHS:
            for _ in range(5):  # caches, pools and lazy imports settle
                assert await asgi_post(app, path, body, CYCLE_KEY) == status
            gc.collect()
            gc.disable()
            try:
                for _ in range(30):
                    assert await asgi_post(app, path, body, CYCLE_KEY) == status
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                found[name] = dict(collections.Counter(type(o).__qualname__ for o in gc.garbage))
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
    return found


@pytest.fixture(scope="module")
def garbage_by_path(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, int]]:
    """Measured in a process of its own, with the upstream in another: this test process
    runs other servers in threads (the shared fake upstream), whose garbage is not ours."""
    proc, url = start_upstream_process()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "tests.test_loop_lag", url, str(tmp_path_factory.mktemp("c"))],
            cwd=ROOT, env={**os.environ, "SLIMGATE_TEST_KEYS": CYCLE_KEY},
            capture_output=True, text=True, timeout=300)
    finally:
        proc.terminate()
        proc.wait(10)
    assert out.returncode == 0, out.stderr[-3000:]
    return cast(dict[str, dict[str, int]], json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", [p[0] for p in PATHS])
def test_requests_leave_no_reference_cycles(
    garbage_by_path: dict[str, dict[str, int]], name: str
) -> None:
    """Cyclic garbage is what only the collector frees: none per request means collections
    stay rare and short (docs/performance.md, tail latency). A cycle made by every request
    leaves each of its types at least 30 times; a one-off (a pooled upstream connection
    closed during the window: one socket transport, seen on a clean run) is not per request."""
    garbage = garbage_by_path[name]
    per_request = {kind: n for kind, n in garbage.items() if n >= 30}
    assert per_request == {}, f"cyclic garbage from 30 requests: {garbage}"


if __name__ == "__main__":  # the measuring process of `garbage_by_path`
    print(json.dumps(asyncio.run(cyclic_garbage(sys.argv[1], Path(sys.argv[2])))))
