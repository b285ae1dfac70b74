"""The store's front door for synchronous code: `connect(target)` to a migrated store on
SQLite or PostgreSQL, `StoreError`, the server-side secrets, and what SQL needs of a
connection.

Workers, CLIs, reports and the admin API import from here. `Connection` (sqlite3's) and
`pg_sync.PgConnection` both fit `Connection`; SQL written for it uses `?` placeholders and
portable syntax, and asks `dialect(con)` where the two differ. The gateway's async store is
opened by `base.open_store`, which migrates through `connect` too.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Literal, Protocol

from gateway.store.errors import StoreError
from gateway.store.migrations import migrate
from gateway.store.sql import SECRET_INSERT, SECRET_SELECT, new_secret

__all__ = ["Connection", "StoreError", "connect", "count_if", "create_private", "dialect",
           "is_postgres_url", "read_secret"]


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


def connect(target: str | Any) -> Connection:
    """A synchronous connection to a migrated store, for workers, CLIs and the admin API:
    `target` is a SQLite path, a postgresql:// URL, or a `StoreConfig` (its `url` with the
    password from `password_env`, else its `path`)."""
    if isinstance(target, str):
        location, password = target, None
    else:
        location, password = target.target, target.password()
    if is_postgres_url(location):
        from gateway.store.pg_schema import migrate_pg
        from gateway.store.pg_sync import open_pg

        pg = open_pg(location, password)
        try:
            migrate_pg(pg.raw)  # a few milliseconds when there is nothing to do
        except BaseException:
            pg.close()
            raise
        return pg
    return _connect_sqlite(location)


BUSY_TIMEOUT_S = 10.0  # how long a connection waits for another's lock (and for WAL, _wal)


def _connect_sqlite(path: str) -> sqlite3.Connection:
    """A synchronous connection to a migrated SQLite file (WAL, busy timeout)."""
    if path != ":memory:":
        create_private(path)
    con = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    con.row_factory = sqlite3.Row
    try:
        _wal(con)
        con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        migrate(con)
    except BaseException:
        con.close()
        raise
    return con


def _wal(con: sqlite3.Connection) -> None:
    """Put the file in WAL mode, retrying a lock: switching a new file takes its exclusive
    lock, and SQLite can answer "database is locked" at once, without waiting in its busy
    handler, while another process switches or migrates the same new file (seen with six
    processes opening one new file on a loaded 2-core machine: `test_store.py`)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(0.2, delay * 2)


def create_private(path: str) -> None:
    """Create the store file readable by its owner only (0600; SQLite gives its -wal and -shm
    files the same mode), and a missing directory 0700. An existing file is left as it is."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not p.exists():
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))


def read_secret(con: Connection, name: str) -> bytes:
    """The named 32-byte secret, made (once, for every process sharing the store) if new.
    The async stores' `secret(name)` runs the same SQL."""
    con.execute(SECRET_INSERT.format(mark="?"), new_secret(name))
    row = con.execute(SECRET_SELECT.format(mark="?"), (name,)).fetchone()
    return bytes(row[0])
