"""`slimgate traces import`: existing exchanges recorded as teacher traffic.

Every example goes through the recorder's own row builder (static-text dedupe, scrubbing
with `store.scrub`), under the key id of the tenant it is imported for, marked with its
source (`exchanges.source = "import:<format>"`). Its request id is a hash of the tenant,
the request and the answer, so importing a file twice adds nothing. Rows are written in
batches, one transaction each: a row is stored whole or not at all.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.auth import KeyRing
from gateway.config import KEY_ID, Config, ServerConfig
from gateway.metrics import Metrics
from gateway.offline.import_batch import read_batch
from gateway.offline.import_formats import (
    FORMATS,
    Bad,
    Example,
    Item,
    Skipped,
    TraceImportError,
    detect,
    read_finetune,
    read_pairs,
)
from gateway.store.db import connect, dialect
from gateway.store.recorder import Exchange, Recorder
from gateway.store.sql import EXCHANGE_COLUMNS, TEXT_COLUMNS, TEXT_UPSERT, copy_sql, insert_sql
from gateway.store.texts import TextWriter
from gateway.task_assign import explicit_task
from gateway.task_ids import scoped_task

BAD_SHOWN = 20  # bad lines quoted in the report; all are counted
_INSERT = insert_sql("exchanges", EXCHANGE_COLUMNS)
_COPY = copy_sql("exchanges", EXCHANGE_COLUMNS)
_INSERT_TEXT = insert_sql("texts", TEXT_COLUMNS, conflict=TEXT_UPSERT)


@dataclass
class ImportReport:
    formats: dict[str, str] = field(default_factory=dict)  # file -> format
    examples: int = 0  # exchanges found in the files
    written: int = 0
    duplicates: int = 0  # already in the store (or twice in these files)
    bad: int = 0
    bad_lines: list[str] = field(default_factory=list)  # the first BAD_SHOWN, "file:line: why"
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> lines
    tenant: str | None = None

    def add_bad(self, b: Bad) -> None:
        self.bad += 1
        if len(self.bad_lines) < BAD_SHOWN:
            self.bad_lines.append(f"{b.path}:{b.line}: {b.reason}")


Progress = Callable[[ImportReport, str, int, int], None]  # report, file, bytes done, total


def import_key_id(server: ServerConfig, tenant: str | None,
                  environ: Mapping[str, str] = os.environ) -> str | None:
    """The key id imported rows are recorded under, so that they belong to `tenant` exactly
    as that tenant's live rows do (`ServerConfig.task_namespace`).

    With `tenants` configured, `tenant` is required and names one of them. Without, each
    gateway key is its own tenant: `tenant` is a key id, required when the gateway has keys
    (in `api_keys_env`) and task names are per tenant; None on an open or shared gateway.
    """
    if server.tenants:
        if tenant is None:
            raise TraceImportError(
                "this gateway has tenants: name the one the history belongs to with --tenant "
                f"({', '.join(sorted(server.tenants))})")
        if tenant not in server.tenants:
            raise TraceImportError(f"no tenant '{tenant}' in server.tenants "
                                   f"({', '.join(sorted(server.tenants))})")
        if not server.tenants[tenant]:
            raise TraceImportError(f"tenant '{tenant}' lists no key ids: no caller could "
                                   "reach what it imports")
        return server.tenants[tenant][0]
    ring = KeyRing.from_env(server.api_keys_env, warn_if_empty=False)
    known = ring.key_ids
    if tenant is None:
        if known and server.client_tasks == "tenant":
            raise TraceImportError(
                "each gateway key is its own tenant here (server.client_tasks = \"tenant\", "
                "no server.tenants): name the key whose traffic this is with --tenant KEY_ID "
                f"(key ids of {server.api_keys_env}: {', '.join(known)})")
        return None
    if known and tenant not in known:
        raise TraceImportError(f"--tenant {tenant!r} is no key id of {server.api_keys_env} "
                               f"({', '.join(known)}); without server.tenants a tenant is "
                               "a key id")
    if not KEY_ID.fullmatch(tenant):
        raise TraceImportError(f"--tenant {tenant!r}: without server.tenants a tenant is a "
                               "key id, the 12 hex digits the store records")
    return tenant


def _sources(paths: list[Path], formats: dict[str, str]) -> Iterator[
        tuple[str, str, int, Iterable[tuple[int, list[Item]]]]]:
    """(label, format, bytes, its (bytes read, items) stream) per file, batch files joined."""
    inputs = [p for p in paths if formats[str(p)] == "openai-batch-input"]
    outputs = [p for p in paths if formats[str(p)] == "openai-batch-output"]
    if bool(inputs) != bool(outputs):
        given, missing = ("input", "output") if inputs else ("output", "input")
        raise TraceImportError(f"OpenAI Batch API {given} file(s) given without the {missing} "
                               "file: pass both, they are joined by custom_id")
    for p in paths:
        fmt = formats[str(p)]
        if fmt in ("slimgate", "pairs"):
            yield str(p), fmt, p.stat().st_size, read_pairs(p, fmt)
        elif fmt == "openai-finetune":
            yield str(p), fmt, p.stat().st_size, read_finetune(p)
    if outputs:
        label = ", ".join(str(p) for p in outputs)
        yield label, "openai-batch", sum(p.stat().st_size for p in outputs), read_batch(
            inputs, outputs)


def import_traces(config: Config, files: list[str], *, tenant: str | None = None,
                  model: str | None = None, progress: Progress | None = None,
                  batch_size: int = 1000) -> ImportReport:
    """Record the examples of `files` in `config.store`; see the module docstring.
    TraceImportError before anything is written when a file or the tenant is refused."""
    if not config.store.record_requests:
        raise TraceImportError("store.record_requests is false: imported exchanges would be "
                               "stored without bodies, and there would be nothing to learn from")
    key_id = import_key_id(config.server, tenant)
    namespace = config.server.task_namespace(key_id)
    paths = [Path(f) for f in files]
    report = ImportReport(formats={str(p): detect(p) for p in paths}, tenant=namespace)
    sources = list(_sources(paths, report.formats))
    con = connect(config.store)
    try:
        writer = _Writer(con, config, report, batch_size)
        for label, fmt, total, stream in sources:
            done = 0
            occurrences: Counter[str] = Counter()  # the same exchange twice in one file counts
            for nbytes, items in stream:
                done += nbytes
                for item in items:
                    if isinstance(item, Bad):
                        report.add_bad(item)
                    elif isinstance(item, Skipped):
                        report.skipped[item.reason] += 1
                    else:
                        writer.add(item, fmt, key_id, namespace, model, occurrences)
                if progress is not None:
                    progress(report, label, min(done, total), total)
            if progress is not None:
                progress(report, label, total, total)
        writer.flush()
    finally:
        con.close()
    return report


class _Writer:
    """Builds rows with the recorder's builder and writes them a batch per transaction."""

    def __init__(self, con: Any, config: Config, report: ImportReport, batch_size: int) -> None:
        self._con, self._report, self._batch_size = con, report, batch_size
        # Rows only: this recorder never starts its writer, so it needs no store.
        self._recorder = Recorder(None, Metrics(), scrub=config.store.scrub,  # type: ignore[arg-type]
                                  dedupe_static=config.store.dedupe_static)
        self._texts = TextWriter()
        self._pending: list[tuple[Exchange, Example]] = []
        self._seen: set[str] = set()
        self._now = time.time()

    def add(self, ex: Example, fmt: str, key_id: str | None, namespace: str | None,
            model: str | None, occurrences: Counter[str]) -> None:
        self._report.examples += 1
        request = dict(ex.request)
        try:
            tag = explicit_task(request, None)
            task = scoped_task(tag, namespace) if tag is not None else None
        except ValueError as e:  # what a live request with this tag would get as a 400
            self._report.add_bad(Bad(ex.path, ex.line, str(e)))
            return
        name = request.get("model")
        request["model"] = name if isinstance(name, str) and name else (
            model or ex.response.get("model") or "imported")
        identity = orjson.dumps([key_id, task, {k: v for k, v in request.items() if k != "model"},
                                 ex.response["choices"]], option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(identity).hexdigest()[:32]
        occurrences[digest] += 1
        n = occurrences[digest]
        request_id = f"import-{digest}" + (f"-{n}" if n > 1 else "")
        if request_id in self._seen:
            self._report.duplicates += 1
            return
        self._seen.add(request_id)
        response = {"id": f"chatcmpl-{request_id}", "created": int(self._now),
                    "model": request["model"], **ex.response}
        self._pending.append((Exchange(
            request_id=request_id, created_at=self._now, endpoint="chat/completions",
            model=str(request["model"]), stream=False, request=request, key_id=key_id,
            task=task, response=response, api=ex.api, source=f"import:{fmt}"), ex))
        if len(self._pending) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        stored = _stored_ids(self._con, [e.request_id for e, _ in pending])
        rows, bodies = [], dict[str, str]()
        for exchange, ex in pending:
            if exchange.request_id in stored:
                self._report.duplicates += 1
                continue
            try:
                row = self._recorder.exchange_row(exchange, bodies)
            except Exception as e:  # noqa: BLE001 - the line is reported, the rest imported
                self._report.add_bad(Bad(ex.path, ex.line,
                                         f"cannot be recorded ({type(e).__name__})"))
                continue
            if row[9] is None or row[10] is None:  # request, response: nesting past JSON's
                self._report.add_bad(Bad(ex.path, ex.line, "body not storable as JSON"))
                continue
            rows.append(row)
        if not rows:
            return
        text_rows = self._texts.rows(bodies)
        _write(self._con, text_rows, rows)
        self._texts.written(text_rows)
        self._report.written += len(rows)


def _stored_ids(con: Any, ids: list[str]) -> set[str]:
    """Which of `ids` the store holds already (what makes a second import add nothing)."""
    if dialect(con) == "postgres":  # one array parameter: planned once, not per id
        return {r[0] for r in con.raw.execute(
            "SELECT request_id FROM exchanges WHERE request_id = ANY(%s)", (ids,))}
    stored: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        stored.update(r[0] for r in con.execute(
            f"SELECT request_id FROM exchanges WHERE request_id IN "
            f"({', '.join('?' for _ in chunk)})", chunk))
    return stored


def _write(con: Any, text_rows: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]) -> None:
    """Static texts, then the exchanges that refer to them: one transaction."""
    if dialect(con) == "postgres":
        raw = con.raw
        with raw.transaction():
            if text_rows:
                con.executemany(_INSERT_TEXT, text_rows)
            with raw.cursor() as cur, cur.copy(_COPY) as copy:  # as the gateway's writer does
                for row in rows:  # PostgreSQL text holds no NUL (JSON bodies escape it)
                    copy.write_row([v.replace("\x00", "\\u0000") if isinstance(v, str)
                                    else v for v in row])
        return
    con.execute("BEGIN IMMEDIATE")
    try:
        if text_rows:
            con.executemany(_INSERT_TEXT, text_rows)
        con.executemany(_INSERT, rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


__all__ = ["FORMATS", "ImportReport", "TraceImportError", "import_key_id", "import_traces"]
