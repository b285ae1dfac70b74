"""The async store the gateway writes to and reads from, on SQLite or PostgreSQL.

`open_store(config.store)` gives a `SqliteStore` (the embedded default, one file) or a
`PostgresStore` (many replicas on one database); both apply the same migrations and take
the same rows, so the recorder, routing and the Responses API never know which they have.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.config import StoreConfig


class Store(Protocol):
    dialect: str  # "sqlite" | "postgres"

    async def write_exchanges(self, rows: Sequence[Sequence[Any]]) -> None: ...

    async def write_comparisons(self, rows: Sequence[Sequence[Any]]) -> None: ...

    async def write_responses(self, rows: Sequence[Sequence[Any]]) -> None: ...

    async def write_texts(self, rows: Sequence[Sequence[Any]]) -> None: ...

    async def response_row(self, response_id: str) -> dict[str, Any] | None: ...

    async def response_chain(self, response_id: str) -> list[dict[str, Any]]:
        """The response's row and those of the turns it continues (columns.RESPONSE_CHAIN),
        in no particular order; empty if it is not stored."""
        ...

    async def delete_response(self, response_id: str) -> None: ...

    async def tasks(self) -> list[dict[str, Any]]: ...

    async def memory_tracks(self) -> list[dict[str, Any]]:
        """Every task's answer-memory stage (`memory_tracks` rows)."""
        ...

    async def memory_entries(self, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Answer-memory entries written after `after_seq`, oldest first (MEMORY_ENTRIES)."""
        ...

    async def secret(self, name: str) -> bytes: ...

    async def ping(self) -> bool: ...

    async def exchanges(
        self, *, task: str | None = None, limit: int = 100, since_seq: int = 0
    ) -> list[dict[str, Any]]: ...

    async def count_exchanges(self) -> int: ...

    async def close(self) -> None: ...


# `Store.tasks()`: every task with the held-out verdict of the student it names, so that the
# routing table can keep a near miss (status "near") in shadow whatever its stage says.
TASKS_WITH_STUDENT_STATUS = (
    "SELECT tasks.*, students.status AS student_status FROM tasks LEFT JOIN students "
    "ON students.task = tasks.id AND students.version = tasks.student_version"
)

MEMORY_TRACKS = "SELECT task, stage, step FROM memory_tracks"
MEMORY_ENTRIES = ("SELECT seq, task, key, answer, usage, created_at FROM memory_entries "
                  "WHERE seq > {mark} ORDER BY seq LIMIT {mark}")


def exchanges_query(task: str | None, limit: int, since_seq: int,
                    mark: str = "?") -> tuple[str, list[Any]]:
    """`Store.exchanges`'s SQL (with the engine's placeholder `mark`) and its arguments."""
    where, args = "seq > " + mark, list[Any]([since_seq])
    if task is not None:
        where += " AND task = " + mark
        args.append(task)
    return f"SELECT * FROM exchanges WHERE {where} ORDER BY seq LIMIT {mark}", [*args, limit]


async def open_store(cfg: StoreConfig) -> Store:
    """The store `cfg` names, migrated and ready."""
    if cfg.is_postgres:
        from gateway.store.postgres import PostgresStore

        return await PostgresStore.open(cfg)
    from gateway.store.sqlite import SqliteStore

    return await SqliteStore.open(cfg.path)
