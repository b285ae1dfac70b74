"""SQLite store through aiosqlite: WAL mode, versioned schema, batched writes.

All SQL is parameterised. The connection runs in aiosqlite's own thread, so a write
never holds the event loop; the gateway never awaits a write on the request path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiosqlite

from gateway.store.migrations import StoreError, connect

EXCHANGE_COLUMNS = (
    "request_id", "created_at", "key_id", "endpoint", "model", "upstream", "backend", "task",
    "stream", "request", "response", "status", "error", "finish_reason", "latency_ms",
    "ttft_ms", "prompt_tokens", "completion_tokens", "cost_usd",
)
_INSERT_EXCHANGE = (
    f"INSERT INTO exchanges ({', '.join(EXCHANGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EXCHANGE_COLUMNS)})"
)


class Store:
    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self.path = path

    @classmethod
    async def open(cls, path: str) -> Store:
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

    async def write_exchanges(self, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.execute("BEGIN")
        try:
            await self._db.executemany(_INSERT_EXCHANGE, rows)
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        await self._db.execute("COMMIT")

    async def ping(self) -> bool:
        try:
            async with self._db.execute("SELECT 1") as cur:
                return (await cur.fetchone()) is not None
        except Exception:
            return False

    async def exchanges(
        self, *, task: str | None = None, limit: int = 100, since_seq: int = 0
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM exchanges WHERE seq > ?"
        args: list[Any] = [since_seq]
        if task is not None:
            sql += " AND task = ?"
            args.append(task)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        async with self._db.execute(sql, args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def count_exchanges(self) -> int:
        async with self._db.execute("SELECT COUNT(*) FROM exchanges") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        await self._db.close()
