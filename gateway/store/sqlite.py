"""SQLite store through aiosqlite: WAL mode, versioned schema, batched writes.

All SQL is parameterised. The connection runs in aiosqlite's own thread, so a write
never holds the event loop; the gateway never awaits a write on the request path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiosqlite

from gateway.store.db import StoreError, connect
from gateway.store.sql import (
    COMPARISON_COLUMNS,
    EXCHANGE_COLUMNS,
    MEMORY_ENTRIES,
    MEMORY_TRACKS,
    RESPONSE_CHAIN,
    RESPONSE_COLUMNS,
    RESPONSE_UPSERT,
    SECRET_INSERT,
    SECRET_SELECT,
    TASKS_WITH_STUDENT_STATUS,
    TEXT_COLUMNS,
    TEXT_UPSERT,
    exchanges_query,
    insert_sql,
    new_secret,
)


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self.path = path

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        # Create and migrate with plain sqlite3 in a thread (one migration code path for
        # the gateway and the workers), then connect for async use.
        await asyncio.to_thread(lambda: connect(path).close())
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except Exception as e:
            raise StoreError(f"cannot open store '{path}': {e}") from None
        db.row_factory = aiosqlite.Row
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode; only an OS crash or
            # power loss can drop the last transactions.
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def _insert(self, table: str, columns: Sequence[str],
                      rows: Sequence[Sequence[Any]], conflict: str = "") -> None:
        # One statement, one implicit transaction: a single round trip to aiosqlite's
        # thread, which matters when the event loop is busy serving requests.
        await self._db.execute(insert_sql(table, columns, rows=len(rows), conflict=conflict),
                               [v for row in rows for v in row])

    async def write_exchanges(self, rows: Sequence[Sequence[Any]]) -> None:
        await self._insert("exchanges", EXCHANGE_COLUMNS, rows)

    async def write_comparisons(self, rows: Sequence[Sequence[Any]]) -> None:
        await self._insert("comparisons", COMPARISON_COLUMNS, rows)

    async def write_responses(self, rows: Sequence[Sequence[Any]]) -> None:
        await self._insert("responses", RESPONSE_COLUMNS, rows, RESPONSE_UPSERT)

    async def write_texts(self, rows: Sequence[Sequence[Any]]) -> None:
        await self._insert("texts", TEXT_COLUMNS, rows, TEXT_UPSERT)

    async def response_row(self, response_id: str) -> dict[str, Any] | None:
        async with self._db.execute("SELECT * FROM responses WHERE id = ?", (response_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row is not None else None

    async def response_chain(self, response_id: str) -> list[dict[str, Any]]:
        async with self._db.execute(RESPONSE_CHAIN.format(mark="?"), (response_id,)) as cur:
            return [dict(row) for row in await cur.fetchall()]

    async def delete_response(self, response_id: str) -> None:
        await self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,))

    async def tasks(self) -> list[dict[str, Any]]:
        """Every task row (the gateway's routing table is built from these), with the held-out
        verdict of the student it names as `student_status`."""
        async with self._db.execute(TASKS_WITH_STUDENT_STATUS) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def memory_tracks(self) -> list[dict[str, Any]]:
        async with self._db.execute(MEMORY_TRACKS) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def memory_entries(self, after_seq: int, limit: int) -> list[dict[str, Any]]:
        async with self._db.execute(MEMORY_ENTRIES.format(mark="?"), (after_seq, limit)) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def secret(self, name: str) -> bytes:
        """A server-side secret kept in the store (see `db.read_secret`)."""
        await self._db.execute(SECRET_INSERT.format(mark="?"), new_secret(name))
        async with self._db.execute(SECRET_SELECT.format(mark="?"), (name,)) as cur:
            row = await cur.fetchone()
        assert row is not None  # inserted just above if it was missing
        return bytes(row[0])

    async def ping(self) -> bool:
        try:
            async with self._db.execute("SELECT 1") as cur:
                return (await cur.fetchone()) is not None
        except Exception:
            return False

    async def exchanges(
        self, *, task: str | None = None, limit: int = 100, since_seq: int = 0
    ) -> list[dict[str, Any]]:
        sql, args = exchanges_query(task, limit, since_seq)
        async with self._db.execute(sql, args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def count_exchanges(self) -> int:
        async with self._db.execute("SELECT COUNT(*) FROM exchanges") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        await self._db.close()
