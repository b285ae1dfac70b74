"""SQLite store through aiosqlite: WAL mode, versioned schema, batched writes.

All SQL is parameterised. The connection runs in aiosqlite's own thread, so a write
never holds the event loop; the gateway never awaits a write on the request path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.store.migrations import MIGRATIONS, SCHEMA_VERSION

EXCHANGE_COLUMNS = (
    "request_id", "created_at", "key_id", "endpoint", "model", "upstream", "backend", "task",
    "stream", "request", "response", "status", "error", "finish_reason", "latency_ms",
    "ttft_ms", "prompt_tokens", "completion_tokens", "cost_usd",
)
_INSERT_EXCHANGE = (
    f"INSERT INTO exchanges ({', '.join(EXCHANGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EXCHANGE_COLUMNS)})"
)


class StoreError(Exception):
    """The store file cannot be opened or is from a newer slimgate."""


async def migrate(db: aiosqlite.Connection) -> int:
    """Bring the file to SCHEMA_VERSION; returns the version it was at."""
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"store is at schema version {current}, newer than this slimgate ({SCHEMA_VERSION})"
        )
    for version in range(current, SCHEMA_VERSION):
        await db.executescript(
            "BEGIN;\n" + MIGRATIONS[version] + f"\nPRAGMA user_version = {version + 1};\nCOMMIT;"
        )
    return current


class Store:
    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self.path = path

    @classmethod
    async def open(cls, path: str) -> Store:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
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
            await migrate(db)
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
