"""Prometheus metrics, one registry per app (no process-global state).

Requests, latency and time to first token are labelled by requested model, backend
(teacher/student) and task; upstream errors by configured model and failure kind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Loop lag and GC pauses: the issue-14 target is "no stall over 20 ms", so fine steps below it.
_PAUSE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class MaxSinceScrape:
    """A gauge of the largest value seen since the previous scrape (as prom-client's
    `nodejs_eventloop_lag_max_seconds`): a histogram shows how often, this shows how bad."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name, self._doc = name, documentation
        self._max = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def track(self, value: float) -> None:
        if value > self._max:  # the usual case, no lock: a stale read only delays the update
            with self._lock:
                self._max = max(self._max, value)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._doc)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            value, self._max = self._max, 0.0
        yield GaugeMetricFamily(self._name, self._doc, value=value)


class Metrics:
    def __init__(self) -> None:
        self.started_at = time.time()
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "slimgate_requests", "Requests answered, by final HTTP status.",
            ["model", "backend", "task", "status"], registry=r,
        )
        self.latency = Histogram(
            "slimgate_request_latency_seconds", "Time from request to the last byte.",
            ["model", "backend", "task"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.ttft = Histogram(
            "slimgate_time_to_first_token_seconds", "Streams: time from request to first chunk.",
            ["model", "backend", "task"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.upstream_errors = Counter(
            "slimgate_upstream_errors", "Failed upstream attempts (before retries/fallbacks).",
            ["upstream", "kind"], registry=r,
        )
        self.tokens = Counter(
            "slimgate_tokens", "Tokens in recorded exchanges.",
            ["model", "backend", "task", "kind"], registry=r,
        )
        self.in_flight = Gauge(
            "slimgate_requests_in_flight", "Requests being served now.", registry=r
        )
        self.record_queue_depth = Gauge(
            "slimgate_record_queue_depth", "Exchanges waiting to be written to the store.",
            registry=r,
        )
        self.records_written = Counter(
            "slimgate_records_written", "Exchanges written to the store.", registry=r
        )
        self.records_dropped = Counter(
            "slimgate_records_dropped",
            "Exchanges not recorded (queue full or store failure); see docs/recording.md.",
            registry=r,
        )
        self.store_write_retries = Counter(
            "slimgate_store_write_retries",
            "Batch writes the store refused for a passing reason (a lock, a dropped "
            "connection) and the recorder tried again; see docs/recording.md.", registry=r,
        )
        self.telemetry_spans = Counter(
            "slimgate_telemetry_spans",
            "OpenTelemetry spans by outcome: exported, dropped (queue full), failed (export "
            "refused or unreachable); see docs/telemetry.md.", ["outcome"], registry=r,
        )

        self.task_assignments = Counter(
            "slimgate_task_assignments", "Requests assigned to a task, by how.", ["how"], registry=r
        )
        self._assigned: dict[str, Any] = {}  # task_assignments' series per `how`, once made
        self.student_fallbacks = Counter(
            "slimgate_student_fallbacks",
            "Student answers replaced by the teacher's inside the request, by reason.",
            ["task", "reason"], registry=r,
        )
        self.shadow_jobs = Counter(
            "slimgate_shadow_jobs", "Background comparisons, by mode and outcome.",
            ["task", "mode", "outcome"], registry=r,
        )
        self.shadow_dropped = Counter(
            "slimgate_shadow_dropped", "Shadow/audit jobs dropped because their queue was full.",
            ["mode"], registry=r,
        )
        self.shadow_queue_depth = Gauge(
            "slimgate_shadow_queue_depth", "Shadow/audit jobs waiting.", registry=r
        )

        self.loop_lag = Histogram(
            "slimgate_event_loop_lag_seconds",
            "How late a 10 ms timer fires: time the event loop was busy elsewhere.",
            buckets=_PAUSE_BUCKETS, registry=r,
        )
        self.loop_lag_max = MaxSinceScrape(
            "slimgate_event_loop_lag_max_seconds",
            "Worst event-loop lag since the previous scrape of /metrics.", r,
        )
        self.loop_lag_on_cpu_max = MaxSinceScrape(
            "slimgate_event_loop_lag_on_cpu_max_seconds",
            "Worst event-loop lag since the previous scrape, counting only time the loop's "
            "thread ran (the rest of a lag it waited for a core, the GIL or a blocking call).", r,
        )
        self.gc_pause = Histogram(
            "slimgate_gc_pause_seconds", "Garbage collections, by generation: their duration.",
            ["generation"], buckets=_PAUSE_BUCKETS, registry=r,
        )
        for generation in ("0", "1", "2"):  # every series from the start, at 0
            self.gc_pause.labels(generation)
        self.gc_pause_max = MaxSinceScrape(
            "slimgate_gc_pause_max_seconds",
            "Longest garbage collection since the previous scrape of /metrics.", r,
        )

    def count_assignment(self, how: str) -> None:
        """One request assigned to a task `how` (every chat request: its series is looked up
        once, on first use as `labels()` would make it, then kept; `labels()` takes µs)."""
        series = self._assigned.get(how)
        if series is None:
            series = self._assigned[how] = self.task_assignments.labels(how)
        series.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
