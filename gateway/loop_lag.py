"""Event-loop lag and garbage-collector pauses, measured inside the gateway process.

A task sleeps a fixed interval and records how late it wakes: the time the loop spent on
something else (a long callback, a collection). `gc.callbacks` time every collection by
generation. Both go to Prometheus (`gateway/metrics.py`); `docs/performance.md` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from typing import Any

from gateway.metrics import Metrics

# One wake-up per 10 ms sees every stall longer than 10 ms (a stall reads up to one interval
# short: the sleep it interrupts had already begun; Node's monitorEventLoopDelay also uses
# 10 ms). Cost: <= 0.15 ms CPU per wake-up on an idle loop (process_time over 500 wake-ups,
# uvloop, 2-core dev VM), so <= 1.5% of a core idle, less when the loop is busy anyway.
LAG_INTERVAL_S = 0.01
_GENERATIONS = ("0", "1", "2")
# Generation 0 is collected when allocations minus deallocations pass the first number.
# Python's 700 ran ~230 young collections/s at 1,500 req/s (c=16, 2-core machine, after the
# freeze): ~0.15 ms each, ~4% of the loop, each promoting in-flight requests' objects to
# older generations. At 10,000 a request's transient objects are freed by reference counting
# before the count gets there: 0 collections/s at c=16, ~3/s of ~3.7 ms at c=64 (same bench).
# 50,000 ran none at either, but a collection, when one comes, would walk 5x more.
GC_THRESHOLDS = (10_000, 10, 10)


class LoopLagMonitor:
    """Started and stopped by the app's lifespan; one per app (its metrics are the app's)."""

    def __init__(self, metrics: Metrics, interval_s: float = LAG_INTERVAL_S) -> None:
        self._metrics = metrics
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None
        self._gc_started = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop-lag")
        gc.callbacks.append(self._on_gc)

    async def aclose(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        m = self._metrics
        while True:
            t, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self._interval)
            late = max(0.0, time.perf_counter() - t - self._interval)
            m.loop_lag.observe(late)
            m.loop_lag_max.track(late)
            # The part of the lateness the loop's thread spent running (its CPU time beyond
            # the interval); the rest it waited: for a core (a busy machine), the GIL or a
            # blocking call. Tells our stalls from the machine's.
            m.loop_lag_on_cpu_max.track(max(0.0, min(late, time.thread_time() - cpu
                                                     - self._interval)))

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector, on whatever thread triggered it: no allocation-heavy work.
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        pause = time.perf_counter() - self._gc_started
        self._metrics.gc_pause.labels(_GENERATIONS[info["generation"]]).observe(pause)
        self._metrics.gc_pause_max.track(pause)


class FrozenStartupHeap:
    """`gc.freeze()` once the lifespan's start-up is done, and the collector's thresholds.

    A full collection walks every tracked object: ~390k after start-up, mostly litellm's,
    150-450 ms per full collection on the 2-core dev machine, the p99 of issue 14. Frozen,
    they are never walked again (the request path makes no reference cycles to collect:
    docs/performance.md says how that was checked).
    `SLIMGATE_GC_FREEZE=0` leaves the collector alone (to measure the difference)."""

    def __init__(self) -> None:
        self._frozen = False
        self._saved: tuple[int, int, int] | None = None

    def freeze(self) -> None:
        if os.environ.get("SLIMGATE_GC_FREEZE", "1") == "0":
            return
        gc.collect()  # what start-up already dropped is freed, not frozen for good
        gc.freeze()
        self._frozen = True
        if gc.get_threshold() != GC_THRESHOLDS:  # else another app in this process set them
            self._saved = gc.get_threshold()
            gc.set_threshold(*GC_THRESHOLDS)

    def unfreeze(self) -> None:
        """On shutdown: the app's objects can be collected again (tests start many apps)."""
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None
