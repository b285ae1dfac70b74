"""Prometheus metrics, one registry per app (no process-global state).

Requests, latency and time to first token are labelled by requested model, backend
(teacher/student) and task; upstream errors by configured model and failure kind.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

CONTENT_TYPE = CONTENT_TYPE_LATEST


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

        self.task_assignments = Counter(
            "slimgate_task_assignments", "Requests assigned to a task, by how.", ["how"], registry=r
        )
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
