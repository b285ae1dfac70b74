"""The async store the gateway writes to and reads from, on SQLite or PostgreSQL.

`open_store(config.store)` gives a `SqliteStore` (the embedded default, one file) or a
`PostgresStore` (many replicas on one database); both apply the same migrations and take
the same rows, so the recorder, routing and the Responses API never know which they have.
What only one engine can do is a protocol of its own (`Notifying`), asked with isinstance.
Synchronous code connects through `gateway.store.db` instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
        """The response's row and those of the turns it continues (sql.RESPONSE_CHAIN),
        in no particular order; empty if it is not stored."""
        ...

    async def delete_response(self, response_id: str) -> None: ...

    async def tasks(self) -> list[dict[str, Any]]: ...

    async def memory_tracks(self) -> list[dict[str, Any]]:
        """Every task's answer-memory stage (`memory_tracks` rows)."""
        ...

    async def memory_entries(self, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Answer-memory entries written after `after_seq`, oldest first (sql.MEMORY_ENTRIES)."""
        ...

    async def secret(self, name: str) -> bytes: ...

    async def ping(self) -> bool: ...

    async def exchanges(
        self, *, task: str | None = None, limit: int = 100, since_seq: int = 0
    ) -> list[dict[str, Any]]: ...

    async def count_exchanges(self) -> int: ...

    async def close(self) -> None: ...


@runtime_checkable
class Notifying(Protocol):
    """A store that can say at once when another process changed something (PostgreSQL's
    `LISTEN`/`NOTIFY`); without it, readers poll. `PostgresStore` is one, `SqliteStore` not."""

    def notifications(self, channel: str) -> AsyncIterator[str]:
        """Payloads of `NOTIFY channel` as they come, until the connection drops (the caller
        polls meanwhile and may listen again)."""
        ...


async def open_store(cfg: StoreConfig) -> Store:
    """The store `cfg` names, migrated and ready."""
    if cfg.is_postgres:
        from gateway.store.postgres import PostgresStore

        return await PostgresStore.open(cfg)
    from gateway.store.sqlite import SqliteStore

    return await SqliteStore.open(cfg.path)
