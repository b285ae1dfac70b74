"""A synchronous PostgreSQL connection that the store's SQL code uses as it uses sqlite3.

The worker, the CLI, reports and the admin API write portable SQL with `?` placeholders
against a DB-API connection. `PgConnection` runs that SQL on psycopg 3: placeholders become
`%s` (outside string literals), rows read by index and by column name like `sqlite3.Row`,
and the connection is in autocommit, so an explicit `BEGIN`/`COMMIT` means what it means
on a sqlite3 connection opened with `isolation_level=None`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.types.numeric import FloatLoader

from gateway.config import redact_url
from gateway.store.errors import StoreError


class Row(tuple[Any, ...]):
    """A result row readable as `row[0]` and `row["name"]`, and as `dict(row)`."""

    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise IndexError(f"no such column: {key}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"_names": names, "__slots__": ()})


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    cls = _row_class(tuple(c.name for c in cursor.description or ()))
    return lambda values: cls(values)


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """`?` placeholders as psycopg's `%s`, and a literal `%` doubled; both only outside
    quoted strings and identifiers."""
    out, quote = [], ""
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


_STATEMENTS = {"BEGIN IMMEDIATE": "BEGIN", "BEGIN": "BEGIN ISOLATION LEVEL REPEATABLE READ"}


class PgConnection:
    """sqlite3-like access to a migrated PostgreSQL store (see the module docstring)."""

    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The psycopg connection (migrations, LISTEN/NOTIFY, advisory locks)."""
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.ClientCursor[Any]:
        sql = _STATEMENTS.get(sql.strip(), sql)
        cur = psycopg.ClientCursor(self._conn, row_factory=_row_factory)
        if params:
            cur.execute(to_pyformat(sql), tuple(params))
        else:
            cur.execute(sql)  # no parameters: psycopg reads no placeholders
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.ClientCursor[Any]:
        cur = psycopg.ClientCursor(self._conn, row_factory=_row_factory)
        cur.executemany(to_pyformat(sql), [tuple(r) for r in rows])
        return cur

    def close(self) -> None:
        self._conn.close()


def open_pg(url: str, password: str | None = None, *, connect_timeout: int = 10) -> PgConnection:
    """An autocommit psycopg connection; NUMERIC values (SUM of a bigint, AVG) read as floats
    like SQLite's, not as Decimal."""
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": connect_timeout}
    if password:
        kwargs["password"] = password
    try:
        conn = psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoreError(f"cannot open store {redact_url(url)}: {reason}") from None
    conn.adapters.register_loader("numeric", FloatLoader)
    return PgConnection(conn)
