"""The store's schema on PostgreSQL: the same numbered migrations as SQLite, translated.

`migrations.MIGRATIONS` is the one list of schema versions. On PostgreSQL each is applied
with SQLite's types mapped (REAL → DOUBLE PRECISION, BLOB → BYTEA, AUTOINCREMENT keys →
BIGSERIAL), and `exchanges` is partitioned by day on `created_at`, so retention drops a
day's partition instead of deleting rows. The version lives in `slimgate_schema`; replicas
starting together serialise on an advisory lock, so each migration runs exactly once.
"""

from __future__ import annotations

import calendar
import logging
import re
import time
from typing import Any

import psycopg

from gateway.store.errors import StoreError
from gateway.store.migrations import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger("slimgate.store")

SCHEMA_LOCK = 0x51_1A_6A_7E  # advisory lock key held while migrating ("slimgate")
DAY = 86_400.0
PARTITIONS_AHEAD = 2  # days after today with a partition ready (a clock a day fast still fits)

_TYPES = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
]
_EXCHANGES_KEY = re.compile(r"(CREATE TABLE exchanges \(\s*seq\s+)BIGSERIAL PRIMARY KEY,")
_EXCHANGES_END = re.compile(r"(cost_usd\s+DOUBLE PRECISION)\s*\n\s*\);")


def translate(sql: str, version: int) -> str:
    """One SQLite migration as PostgreSQL DDL."""
    for pattern, replacement in _TYPES:
        sql = pattern.sub(replacement, sql)
    if version == 1:
        # A partitioned table's primary key must contain the partition key; a DEFAULT
        # partition catches any row outside the days prepared (it is never lost).
        sql, n_key = _EXCHANGES_KEY.subn(r"\1BIGSERIAL,", sql)
        sql, n_end = _EXCHANGES_END.subn(
            r"\1,\n        PRIMARY KEY (seq, created_at)\n    ) PARTITION BY RANGE (created_at);\n"
            "    CREATE TABLE exchanges_default PARTITION OF exchanges DEFAULT;", sql)
        if n_key != 1 or n_end != 1:
            raise StoreError("migration 1 no longer has the shape pg_schema.translate expects")
    return sql


def migrate_pg(conn: psycopg.Connection[Any], now: float | None = None) -> int:
    """Bring the database to SCHEMA_VERSION and prepare today's partitions; returns the
    version it was at. Serialised across processes by an advisory lock."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS slimgate_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM slimgate_schema").fetchone()
        if row is None:
            conn.execute("INSERT INTO slimgate_schema (version) VALUES (0)")
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StoreError(f"store is at schema version {current}, newer than this "
                             f"slimgate ({SCHEMA_VERSION})")
        for version in range(current, SCHEMA_VERSION):
            conn.execute(translate(MIGRATIONS[version], version + 1))  # type: ignore[arg-type]
            conn.execute("UPDATE slimgate_schema SET version = %s", (version + 1,))
        ensure_partitions(conn, time.time() if now is None else now)
    return current


def partition_name(day_start: float) -> str:
    return "exchanges_p" + time.strftime("%Y%m%d", time.gmtime(day_start))


def ensure_partitions(conn: psycopg.Connection[Any], now: float,
                      ahead: int = PARTITIONS_AHEAD) -> list[str]:
    """Create the daily partitions of `exchanges` from today to `ahead` days on (UTC days).
    A day whose rows already sit in the default partition is left there (logged)."""
    made = []
    today = now - now % DAY
    existing = {name for (name,) in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'exchanges'")}
    for i in range(ahead + 1):
        start = today + i * DAY
        name = partition_name(start)
        if name in existing:
            continue
        try:
            with conn.transaction():
                conn.execute(f"CREATE TABLE {name} PARTITION OF exchanges "  # name: digits only
                             f"FOR VALUES FROM ({start!r}) TO ({start + DAY!r})")
            made.append(name)
        except psycopg.errors.CheckViolation:
            log.warning("partition %s not created: the default partition already holds rows "
                        "of that day (they stay there and are deleted by retention)", name)
        except (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
            pass  # another process made it meanwhile
    return made


def day_partitions(conn: psycopg.Connection[Any]) -> list[tuple[str, float]]:
    """The daily partitions of `exchanges` with the end of their day, oldest first."""
    names = [name for (name,) in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'exchanges' "
        "AND c.relname LIKE 'exchanges_p%' ORDER BY c.relname")]
    return [(name, _utc_midnight(name) + DAY) for name in names]


def _utc_midnight(name: str) -> float:
    day = time.strptime(name.removeprefix("exchanges_p"), "%Y%m%d")
    return float(calendar.timegm(day))
