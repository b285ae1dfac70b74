"""Records exchanges through a bounded queue drained by one background writer.

In the default `async` durability, `Recorder.submit` never waits: it puts the exchange on
an in-memory queue and returns. In `sync` durability it waits until the batch holding the
exchange is committed (group commit: concurrent requests share one transaction), and a
full queue applies back-pressure instead of dropping.
The writer turns queued exchanges into rows (streams assembled, usage and cost
extracted) and writes them in batches, one transaction per batch. When the queue is
full the exchange is dropped, counted in `slimgate_records_dropped_total` and logged —
the reply is never held back for the disk. `close()` flushes everything queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.cost import CostTable
from gateway.metrics import Metrics
from gateway.store.base import Store
from gateway.store.stored_response import StoredResponse
from gateway.store.texts import TextWriter, cut_static, text_hash
from gateway.streams import assemble_chat, assemble_text

log = logging.getLogger("slimgate.recorder")


@dataclass(slots=True)
class Exchange:
    request_id: str
    created_at: float
    endpoint: str
    model: str
    stream: bool
    request: dict[str, Any] | None
    status: int = 200
    key_id: str | None = None
    upstream: str | None = None
    upstream_model: str | None = None  # provider's model name, for pricing
    backend: str = "teacher"
    task: str | None = None
    response: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] | None = None  # a stream's chunks, assembled at write time
    error: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    committed: asyncio.Future[None] | None = None  # set in sync durability
    student_version: int | None = None  # the student that served or was tried
    fallback: str | None = None  # why the student's answer was replaced by the teacher's
    task_label: str = ""  # the task as a metric label: known tasks only, else "other"
    api: str | None = None  # the API the client called, when not `endpoint` (responses)
    source: str | None = None  # None: live traffic; "import:<format>": `slimgate traces import`


@dataclass(slots=True)
class LiveComparison:
    """A shadow or audit comparison of a student's answer with the teacher's."""

    created_at: float
    task: str
    version: int
    mode: str  # shadow | audit
    request_id: str
    score: float
    agree: bool
    valid: bool
    detail: str
    student: dict[str, Any] | None
    teacher: dict[str, Any] | None
    student_ms: float | None
    teacher_ms: float | None
    student_tokens: int | None
    teacher_tokens: int | None

    def row(self) -> tuple[Any, ...]:
        return (
            self.created_at, self.task, self.version, self.mode, self.request_id, self.score,
            int(self.agree), int(self.valid), self.detail,
            orjson.dumps(self.student).decode(), orjson.dumps(self.teacher).decode(),
            self.student_ms, self.teacher_ms, self.student_tokens, self.teacher_tokens,
        )


def _dumps(value: Any) -> str | None:
    """JSON text of a body, or None for no body or one orjson cannot write (the row is
    still recorded, with the reason in `error`)."""
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return None


Record = Exchange | LiveComparison | StoredResponse  # what the writer's queue carries
# Batches this small are built on the event loop, larger ones in a thread. A hop to a thread
# costs ~60 µs (uvloop, this 2-core machine); a row ~0.2 ms on our agent-request bench. Up
# to 4 rows (≤ ~1 ms) the loop's stall is short and a quiet gateway, or `durability = "sync"`
# at low load, keeps its commit without the hop; the 4 itself is a judgement, not tuned.
BUILD_INLINE_MAX = 4
# Waits before each retry of a write the store refused for a passing reason (another
# process holds SQLite's write lock past busy_timeout, a PostgreSQL connection dropped):
# ~30 s in all, on top of each attempt's own busy wait, before records are counted lost.
# Seen: a worker converting a GGUF model on a loaded 2-core machine held the SQLite lock
# past the 5 s busy timeout (bench/loop_bench.py, 2026-12-06) and one record was lost.
WRITE_RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


def transient(exc: BaseException) -> bool:
    """Whether a failed write may succeed if tried again unchanged."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.errors.SerializationFailure |
                      psycopg.errors.DeadlockDetected)


def _summarise_embeddings(resp: dict[str, Any]) -> dict[str, Any]:
    # Vectors are large and useless for distillation: keep their count and size only.
    data = resp.get("data") or []
    dims = len(data[0].get("embedding") or []) if data and isinstance(data[0], dict) else 0
    return {k: v for k, v in resp.items() if k != "data"} | {"data_count": len(data), "dims": dims}


class Recorder:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        queue_size: int = 50_000,
        batch_size: int = 500,
        record_bodies: bool = True,
        durable: bool = False,
        scrub: bool = False,
        dedupe_static: bool = True,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._record_bodies = record_bodies
        self.durable = durable
        self._scrub = scrub  # secrets/PII replaced by placeholders before the write
        self._dedupe = dedupe_static  # system prompts, tools, formats stored once (texts.py)
        self._texts = TextWriter()
        self._costs = CostTable()
        self._task: asyncio.Task[None] | None = None
        self._last_drop_log = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="slimgate-recorder")

    async def submit(self, ex: Exchange) -> None:
        """Record per the configured durability (see the module docstring)."""
        if not self.durable:
            self.record(ex)
            return
        ex.committed = asyncio.get_running_loop().create_future()
        await self._queue.put(ex)
        self._metrics.record_queue_depth.set(self._queue.qsize())
        await ex.committed

    def record(self, ex: Record) -> None:
        try:
            self._queue.put_nowait(ex)
        except asyncio.QueueFull:
            self._metrics.records_dropped.inc()
            now = time.monotonic()
            if now - self._last_drop_log > 5:
                self._last_drop_log = now
                log.error("record queue full (%d): dropping records", self._queue.maxsize)
            return
        self._metrics.record_queue_depth.set(self._queue.qsize())

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        # Natural batching: take everything queued (up to batch_size) and write it in one
        # transaction; whatever arrives meanwhile is the next batch. Items are taken with
        # get_nowait, never one await per item: under load each await costs a full turn
        # of a busy event loop.
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            await self._write(batch)

    def _build(self, batch: list[Record]) -> tuple[list[Any], list[Any], list[Any], dict[str, str]]:
        """The batch's rows: exchanges, comparisons, stored responses, and the static texts
        the exchanges refer to (by hash). A record that cannot be built is dropped, counted."""
        rows, comparisons, responses = [], [], []
        bodies: dict[str, str] = {}
        for ex in batch:
            try:
                if isinstance(ex, LiveComparison):
                    comparisons.append(self._comparison_row(ex))
                elif isinstance(ex, StoredResponse):
                    responses.append(ex.row())
                else:
                    rows.append(self.exchange_row(ex, bodies))
            except Exception:
                log.exception("could not build the record for request %s", ex.request_id)
                self._metrics.records_dropped.inc()
        return rows, comparisons, responses, bodies

    async def _write(self, batch: list[Record]) -> None:
        rows: list[Any] = []
        comparisons: list[Any] = []
        responses: list[Any] = []
        written = 0
        try:
            # Building rows (stream assembly, JSON, scrubbing, static-text hashes) is CPU
            # work: ~0.2 ms a row, 13 ms for a batch of 62 at concurrency 64 (measured with
            # bench/tail_latency.py). In a thread the event loop runs between the GIL's
            # switches instead of waiting for the whole batch (BUILD_INLINE_MAX says why
            # small batches stay on the loop).
            if len(batch) > BUILD_INLINE_MAX:
                rows, comparisons, responses, bodies = await asyncio.to_thread(self._build, batch)
            else:
                rows, comparisons, responses, bodies = self._build(batch)
            text_rows = self._texts.rows(bodies)
            if text_rows:  # before the exchanges that refer to them
                await self._persist(self._store.write_texts, text_rows)
                self._texts.written(text_rows)
            for write, pending in ((self._store.write_exchanges, rows),
                                   (self._store.write_comparisons, comparisons),
                                   (self._store.write_responses, responses)):
                if pending:
                    await self._persist(write, pending)
                    written += len(pending)
            self._metrics.records_written.inc(written)
        except Exception:
            lost = len(rows) + len(comparisons) + len(responses) - written
            log.exception("store write failed; %d records lost", lost)
            self._metrics.records_dropped.inc(lost)
        finally:
            for ex in batch:
                done = ex.committed if isinstance(ex, Exchange) else None
                if done is not None and not done.done():
                    done.set_result(None)
                self._queue.task_done()
            self._metrics.record_queue_depth.set(self._queue.qsize())

    async def _persist(self, write: Callable[[Sequence[Sequence[Any]]], Awaitable[None]],
                       rows: Sequence[Sequence[Any]]) -> None:
        """One batch insert (a single statement: all or nothing), tried again while the
        store's refusal is transient (`WRITE_RETRY_DELAYS_S`)."""
        for delay in (*WRITE_RETRY_DELAYS_S, None):
            try:
                await write(rows)
                return
            except Exception as exc:
                if delay is None or not transient(exc):
                    raise
                log.warning("store write refused (%s); retrying in %.2f s", exc, delay)
                self._metrics.store_write_retries.inc()
                await asyncio.sleep(delay)

    def _comparison_row(self, c: LiveComparison) -> tuple[Any, ...]:
        """A comparison's row under the same rules as exchanges: the two answers (a student
        re-identifies personal data) are dropped without `record_requests`, scrubbed with
        `scrub`, and so is the detail, which may quote them."""
        row = list(c.row())
        detail, student, teacher = 8, 9, 10
        if not self._record_bodies:
            row[student] = row[teacher] = None
            row[detail] = "(not recorded: store.record_requests is false)"
        elif self._scrub:
            from gateway.privacy.scrub import scrub_texts

            texts, _ = scrub_texts([row[student], row[teacher], row[detail] or ""])
            row[student], row[teacher], row[detail] = texts
        return tuple(row)

    def exchange_row(self, ex: Exchange, bodies: dict[str, str]) -> tuple[Any, ...]:
        """The exchange's row (EXCHANGE_COLUMNS) as stored: bodies kept or not, static text
        cut into `bodies` by hash, scrubbed. The importer builds its rows here too."""
        resp = ex.response
        if ex.chunks is not None:
            resp = assemble_chat(ex.chunks) if ex.endpoint == "chat/completions" else (
                assemble_text(ex.chunks)
            )
        usage = (resp or {}).get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        choices = (resp or {}).get("choices") or []
        finish = choices[0].get("finish_reason") if choices else None
        if resp is not None and ex.endpoint == "embeddings":
            resp = _summarise_embeddings(resp)
        cost = None
        if ex.upstream_model and ex.status < 400:
            cost = self._costs.estimate(ex.upstream_model, prompt_tokens, completion_tokens)
        labels = (ex.model, ex.backend, ex.task_label)
        if prompt_tokens:
            self._metrics.tokens.labels(*labels, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self._metrics.tokens.labels(*labels, "completion").inc(completion_tokens)
        keep = self._record_bodies
        request, cut = ex.request, dict[str, str]()
        if keep and self._dedupe and isinstance(request, dict):
            request, cut = cut_static(request)
        request_json = _dumps(request) if keep else None
        response_json = _dumps(resp) if keep else None
        error = ex.error
        if keep and ((ex.request is not None and request_json is None)
                     or (resp is not None and response_json is None)):
            error = (error + "; " if error else "") + "body not storable as JSON (nesting)"
        if self._scrub and request_json is not None:
            # One scrubber for all, so a value gets the same placeholder in each.
            from gateway.privacy.scrub import scrub_texts

            texts, _ = scrub_texts([request_json, response_json or "", error or "", *cut.values()])
            request_json, response_json = texts[0], (texts[1] if response_json else None)
            error = texts[2] if error else None
            cut = dict(zip(cut, texts[3:], strict=True))
        refs = None
        if cut and request_json is not None:
            hashes = {place: text_hash(body) for place, body in cut.items()}
            bodies.update((hashes[place], body) for place, body in cut.items())
            refs = orjson.dumps(hashes).decode()
        return (
            ex.request_id, ex.created_at, ex.key_id, ex.endpoint, ex.model, ex.upstream,
            ex.backend, ex.task, int(ex.stream), request_json, response_json,
            ex.status, error, finish, ex.latency_ms, ex.ttft_ms, prompt_tokens,
            completion_tokens, cost, ex.student_version, ex.fallback, ex.api or ex.endpoint,
            refs, ex.source,
        )

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self._queue.join()

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
