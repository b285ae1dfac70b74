"""The store: SQLite migrations from older files and WAL; the recorder's queue behaviour on
both engines (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.config import StoreConfig
from gateway.metrics import Metrics
from gateway.store.base import Store, open_store
from gateway.store.db import StoreError, connect
from gateway.store.migrations import MIGRATIONS, SCHEMA_VERSION
from gateway.store.recorder import Exchange, Recorder
from gateway.store.sql import EXCHANGE_COLUMNS, copy_sql, insert_sql
from gateway.store.sqlite import SqliteStore
from tests.pg import store_table


async def open_target(target: str) -> Store:
    return await open_store(StoreConfig(**store_table(target)))


def exchange(i: int) -> Exchange:
    return Exchange(
        request_id=f"r{i}", created_at=1.0, endpoint="chat/completions", model="m",
        stream=False, request={"messages": [{"role": "user", "content": str(i)}]},
        response={"choices": [{"message": {"role": "assistant", "content": "x"},
                               "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
    )


async def test_new_file_is_wal_and_current(tmp_path: Path) -> None:
    store = await SqliteStore.open(str(tmp_path / "sub" / "s.db"))
    await store.close()
    con = sqlite3.connect(tmp_path / "sub" / "s.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_oldest_schema_file_opens_and_keeps_rows(tmp_path: Path) -> None:
    """A file written by the first slimgate (schema 1) opens with this one, rows intact."""
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(MIGRATIONS[0])
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO exchanges (request_id, created_at, endpoint, model, stream, status) "
                "VALUES ('old', 1.0, 'chat/completions', 'm', 0, 200)")
    con.commit()
    con.close()
    store = await SqliteStore.open(str(path))
    assert [r["request_id"] for r in await store.exchanges()] == ["old"]
    await store.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this slimgate"):
        await SqliteStore.open(str(path))


async def test_recorder_writes_in_batches_and_flushes_on_close(store_target: str) -> None:
    store = await open_target(store_target)
    metrics = Metrics()
    rec = Recorder(store, metrics, batch_size=7)
    rec.start()
    for i in range(100):
        rec.record(exchange(i))
    await rec.close()
    assert await store.count_exchanges() == 100
    assert metrics.records_written._value.get() == 100
    rows = await store.exchanges(limit=1)
    assert rows[0]["prompt_tokens"] == 3 and rows[0]["finish_reason"] == "stop"
    await store.close()


async def test_full_queue_drops_and_counts_never_blocks(store_target: str) -> None:
    store = await open_target(store_target)
    metrics = Metrics()
    rec = Recorder(store, metrics, queue_size=10)  # writer not started: the queue fills
    for i in range(25):
        rec.record(exchange(i))  # must return at once even when full
    assert metrics.records_dropped._value.get() == 15
    rec.start()
    await asyncio.wait_for(rec.close(), 5)
    assert await store.count_exchanges() == 10
    await store.close()


async def test_metadata_only_recording(store_target: str) -> None:
    store = await open_target(store_target)
    rec = Recorder(store, Metrics(), record_bodies=False)
    rec.start()
    rec.record(exchange(1))
    await rec.close()
    [row] = await store.exchanges()
    assert row["request"] is None and row["response"] is None and row["prompt_tokens"] == 3
    await store.close()


def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    """Gateways, workers and CLIs may start together on a store nobody has made yet."""
    import subprocess
    import sys

    code = ("import sys; from gateway.store.db import connect; "
            "connect(sys.argv[1]).close()")
    for attempt in range(3):
        path = tmp_path / f"new-{attempt}.db"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path)],
                                  stderr=subprocess.PIPE) for _ in range(6)]
        errors = [p.communicate()[1].decode() for p in procs if p.wait() != 0]
        assert errors == []
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        con.close()


def test_opening_waits_for_another_process_writing_the_new_file(tmp_path: Path) -> None:
    """Switching to WAL while another connection holds the file's write lock is refused at
    once (SQLite's busy handler is not asked); opening retries until the lock is gone."""
    import threading

    path = tmp_path / "busy.db"
    other = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    other.execute("CREATE TABLE mine (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO mine VALUES (1)")
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    con = connect(str(path))
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()
    other.close()


class _LockedFor:
    """A store whose exchange writes are refused `times` times as SQLite refuses a lock."""

    def __init__(self, store: Any, times: int, error: Exception) -> None:
        self._store, self.left, self.error, self.calls = store, times, error, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def write_exchanges(self, rows: Any) -> None:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise self.error
        await self._store.write_exchanges(rows)


async def test_recorder_retries_a_locked_store_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.store.recorder as recorder_module

    monkeypatch.setattr(recorder_module, "WRITE_RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    inner = await SqliteStore.open(str(tmp_path / "locked.db"))
    store = _LockedFor(inner, 2, sqlite3.OperationalError("database is locked"))
    metrics = Metrics()
    rec = Recorder(store, metrics, batch_size=50)  # type: ignore[arg-type]
    rec.start()
    for i in range(20):
        rec.record(exchange(i))
    await rec.close()
    assert await inner.count_exchanges() == 20
    assert metrics.records_dropped._value.get() == 0
    assert metrics.store_write_retries._value.get() == 2
    await inner.close()


async def test_recorder_drops_a_batch_on_a_lasting_or_hard_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.store.recorder as recorder_module

    monkeypatch.setattr(recorder_module, "WRITE_RETRY_DELAYS_S", (0.0, 0.0))
    inner = await SqliteStore.open(str(tmp_path / "hard.db"))
    for error, calls in ((sqlite3.OperationalError("database is locked"), 3),  # 1 + 2 retries
                         (sqlite3.IntegrityError("constraint failed"), 1)):  # never retried
        store = _LockedFor(inner, 99, error)
        metrics = Metrics()
        rec = Recorder(store, metrics, batch_size=50)  # type: ignore[arg-type]
        rec.start()
        for i in range(5):
            rec.record(exchange(i))
        await rec.close()
        assert store.calls == calls
        assert metrics.records_dropped._value.get() == 5
    assert await inner.count_exchanges() == 0
    await inner.close()


def test_inserts_are_built_from_the_column_lists() -> None:
    """Both engines, the importer and the worker write with the statements `insert_sql`
    builds: every column once, a placeholder each, any number of rows, one conflict clause."""
    assert insert_sql("t", ("a", "b")) == "INSERT INTO t (a, b) VALUES (?, ?)"
    assert insert_sql("t", ("a", "b"), rows=2, mark="%s", conflict="ON CONFLICT DO NOTHING") == (
        "INSERT INTO t (a, b) VALUES (%s, %s), (%s, %s) ON CONFLICT DO NOTHING")
    assert copy_sql("t", ("a", "b")) == "COPY t (a, b) FROM STDIN"
    con = sqlite3.connect(":memory:")
    con.execute(f"CREATE TABLE t ({', '.join(EXCHANGE_COLUMNS)})")
    con.execute(insert_sql("t", EXCHANGE_COLUMNS, rows=3), list(range(3 * len(EXCHANGE_COLUMNS))))
    assert con.execute("SELECT COUNT(*), MAX(source) FROM t").fetchone() == (
        3, 3 * len(EXCHANGE_COLUMNS) - 1)
