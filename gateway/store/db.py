"""What the store's synchronous code needs of a connection, on SQLite or PostgreSQL.

`Connection` and `pg_sync.PgConnection` both fit `Connection`; SQL written for it
uses `?` placeholders and portable syntax, and asks `dialect(con)` where the two differ.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol


class Connection(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...

    def close(self) -> None: ...


def dialect(con: Any) -> Literal["sqlite", "postgres"]:
    return "postgres" if getattr(con, "dialect", None) == "postgres" else "sqlite"


def count_if(condition: str) -> str:
    """How many rows meet `condition`, in SQL both engines read (PostgreSQL has no SUM of a
    boolean)."""
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))
