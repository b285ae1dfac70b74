"""Spans leave the gateway in batches, off the request path: a bounded queue, one sender.

`submit` (called once per finished request) appends to a deque or counts a drop; nothing
else happens on the request path. A background task wakes every `interval_s` (or when a
batch is full), builds the batch's OTLP body in a worker thread and POSTs it. An export that
fails is counted and logged, never retried into a growing backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from urllib.parse import unquote

import aiohttp

from gateway.config import Config
from gateway.metrics import Metrics
from gateway.store.catalog import TaskRecord
from gateway.store.recorder import Exchange
from gateway.telemetry.otlp import Scope, encode_json, encode_protobuf
from gateway.telemetry.settings import TelemetryConfig
from gateway.telemetry.spans import Finished, to_span

log = logging.getLogger("slimgate.telemetry")
VERSION = "0.1.0"
CONTENT_TYPES = {"http/protobuf": "application/x-protobuf", "http/json": "application/json"}


def export_headers(cfg: TelemetryConfig) -> dict[str, str]:
    """Headers from the env var `headers_env` names, in OTEL_EXPORTER_OTLP_HEADERS' form
    ("k=v,k2=v2", values URL-encoded); the values (tokens) never reach a log."""
    out = {"content-type": CONTENT_TYPES[cfg.protocol]}
    raw = os.environ.get(cfg.headers_env, "") if cfg.headers_env else ""
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{cfg.headers_env}: expected key=value pairs separated by commas")
        out[key.strip().lower()] = unquote(value.strip())
    return out


class SpanExporter:
    def __init__(self, config: Config, metrics: Metrics) -> None:
        cfg = config.telemetry
        assert cfg.otlp_endpoint is not None
        self._cfg, self._url = cfg, cfg.otlp_endpoint
        self._metrics = metrics.telemetry_spans
        self._headers = export_headers(cfg)
        self._providers = {m.name: m.provider for m in config.models}
        self._scope = Scope({"service.name": cfg.service_name, "service.version": VERSION,
                             "telemetry.sdk.name": "slimgate",
                             "telemetry.sdk.language": "python"}, "slimgate.gateway", VERSION)
        self._encode = encode_protobuf if cfg.protocol == "http/protobuf" else encode_json
        self._queue: deque[Finished] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._session: aiohttp.ClientSession | None = None
        self._last_warning = 0.0
        self.exported = self.dropped = self.failed = 0

    def submit(self, ex: Exchange, traceparent: str | None, task: TaskRecord | None) -> None:
        """Queue a finished request's span (the request path's only telemetry work)."""
        if len(self._queue) >= self._cfg.queue_size:
            self.dropped += 1
            self._metrics.labels("dropped").inc()
            return
        self._queue.append(Finished(ex, traceparent, task))
        if len(self._queue) >= self._cfg.batch_size:
            self._wake.set()

    def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._cfg.timeout_s))
        self._task = asyncio.create_task(self._run(), name="slimgate-telemetry")

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._cfg.interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send everything queued so far, a batch at a time."""
        while self._queue:
            n = min(len(self._queue), self._cfg.batch_size)
            batch = [self._queue.popleft() for _ in range(n)]
            await self._send(batch)

    def _body(self, batch: list[Finished]) -> bytes:
        return self._encode(self._scope, [
            to_span(f, self._providers.get(f.ex.upstream or "", "openai")) for f in batch])

    async def _send(self, batch: list[Finished]) -> None:
        assert self._session is not None
        try:
            body = await asyncio.to_thread(self._body, batch)
            async with self._session.post(self._url, data=body, headers=self._headers) as r:
                await r.read()
                if r.status >= 300:
                    raise RuntimeError(f"the collector answered HTTP {r.status}")
        except Exception as e:  # an export must never take the gateway down
            self.failed += len(batch)
            self._metrics.labels("failed").inc(len(batch))
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("OpenTelemetry export to %s failed (%s: %s); %d spans lost",
                            self._url, type(e).__name__, e, len(batch))
            return
        self.exported += len(batch)
        self._metrics.labels("exported").inc(len(batch))

    async def aclose(self) -> None:
        """Stop the sender once the batch it may be sending is sent (cancelling it mid-send
        lost that batch: seen as a flaky test under load), then send what is left; each
        request is bounded by timeout_s."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self.flush()
            await self._session.close()
