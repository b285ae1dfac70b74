"""PostgreSQL store through psycopg 3's async pool: what many gateway replicas share.

Exchanges and comparisons are written with `COPY … FROM STDIN`, one transaction per batch
(the recorder's batch), which PostgreSQL ingests several times faster than row inserts.
The schema is migrated by `db.connect` before the pool opens. `notifications`
yields `NOTIFY` payloads (`base.Notifying`) so a replica hears of a stage change at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.numeric import FloatLoader
from psycopg_pool import AsyncConnectionPool

from gateway.config import StoreConfig
from gateway.store.db import connect
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
    copy_sql,
    exchanges_query,
    insert_sql,
    new_secret,
)

log = logging.getLogger("slimgate.store")

_COPY_EXCHANGES = copy_sql("exchanges", EXCHANGE_COLUMNS)
_COPY_COMPARISONS = copy_sql("comparisons", COMPARISON_COLUMNS)
_INSERT_RESPONSE = insert_sql("responses", RESPONSE_COLUMNS, mark="%s", conflict=RESPONSE_UPSERT)
_INSERT_TEXT = insert_sql("texts", TEXT_COLUMNS, mark="%s", conflict=TEXT_UPSERT)


def _text_safe(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL, which SQLite stores: one such character in an
    upstream's error text would fail the whole batch's COPY. JSON bodies never have it raw
    (orjson writes \\u0000); other text gets the same escape."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\\u0000")
    return value


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("numeric", FloatLoader)  # SUM/AVG as floats, as on SQLite


class PostgresStore:
    dialect = "postgres"

    def __init__(self, pool: AsyncConnectionPool[Any], cfg: StoreConfig) -> None:
        self._pool = pool
        self._cfg = cfg

    @classmethod
    async def open(cls, cfg: StoreConfig) -> PostgresStore:
        await asyncio.to_thread(lambda: connect(cfg).close())  # migrate, once per start
        kwargs: dict[str, Any] = {"autocommit": True}
        password = cfg.password()
        if password:
            kwargs["password"] = password
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            cfg.target, kwargs=kwargs, min_size=1, max_size=cfg.pool_size, open=False,
            configure=_configure, name="slimgate-store",
        )
        await pool.open(wait=True, timeout=15)
        return cls(pool, cfg)

    async def _copy(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with (self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur,
                    cur.copy(sql) as copy):
            for row in rows:
                await copy.write_row([_text_safe(v) for v in row])

    async def write_exchanges(self, rows: Sequence[Sequence[Any]]) -> None:
        await self._copy(_COPY_EXCHANGES, rows)

    async def write_comparisons(self, rows: Sequence[Sequence[Any]]) -> None:
        await self._copy(_COPY_COMPARISONS, rows)

    async def write_responses(self, rows: Sequence[Sequence[Any]]) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_INSERT_RESPONSE, [tuple(r) for r in rows])

    async def write_texts(self, rows: Sequence[Sequence[Any]]) -> None:
        # Sorted by hash: two replicas upserting the same texts lock them in one order.
        ordered = sorted((tuple(r) for r in rows), key=lambda r: r[0])
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_INSERT_TEXT, ordered)

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, args)
            return await cur.fetchall()

    async def response_row(self, response_id: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT * FROM responses WHERE id = %s", (response_id,))
        return rows[0] if rows else None

    async def response_chain(self, response_id: str) -> list[dict[str, Any]]:
        return await self._fetch(RESPONSE_CHAIN.format(mark="%s"), (response_id,))

    async def delete_response(self, response_id: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM responses WHERE id = %s", (response_id,))

    async def tasks(self) -> list[dict[str, Any]]:
        return await self._fetch(TASKS_WITH_STUDENT_STATUS)

    async def memory_tracks(self) -> list[dict[str, Any]]:
        return await self._fetch(MEMORY_TRACKS)

    async def memory_entries(self, after_seq: int, limit: int) -> list[dict[str, Any]]:
        return await self._fetch(MEMORY_ENTRIES.format(mark="%s"), (after_seq, limit))

    async def secret(self, name: str) -> bytes:
        async with self._pool.connection() as conn:
            await conn.execute(SECRET_INSERT.format(mark="%s"), new_secret(name))
            cur = await conn.execute(SECRET_SELECT.format(mark="%s"), (name,))
            row = await cur.fetchone()
        assert row is not None  # inserted just above if it was missing
        return bytes(row[0])

    async def ping(self) -> bool:
        try:
            async with self._pool.connection(timeout=5) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    async def exchanges(
        self, *, task: str | None = None, limit: int = 100, since_seq: int = 0
    ) -> list[dict[str, Any]]:
        return await self._fetch(*exchanges_query(task, limit, since_seq, "%s"))

    async def count_exchanges(self) -> int:
        rows = await self._fetch("SELECT COUNT(*) AS n FROM exchanges")
        return int(rows[0]["n"])

    async def notifications(self, channel: str) -> AsyncIterator[str]:
        """Payloads of `NOTIFY channel`, on a connection of their own (not the pool's),
        until the connection drops (the caller falls back to polling and may listen again)."""
        kwargs: dict[str, Any] = {"autocommit": True}
        password = self._cfg.password()
        if password:
            kwargs["password"] = password
        async with await psycopg.AsyncConnection.connect(self._cfg.target, **kwargs) as conn:
            if not channel.isidentifier():
                raise ValueError(f"bad channel name {channel!r}")
            await conn.execute(f'LISTEN "{channel}"')
            async for note in conn.notifies():
                yield note.payload

    async def close(self) -> None:
        await self._pool.close()
