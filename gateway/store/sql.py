"""The SQL both engines run, written once: the columns each writer fills (one list for both
engines, the recorder and the importers), the INSERT and COPY built from them, the upserts,
and the reads of the async store. `{mark}` in a statement is the engine's placeholder
(`?` on SQLite and on `db.connect`'s connections, `%s` on psycopg's own).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

EXCHANGE_COLUMNS = (
    "request_id", "created_at", "key_id", "endpoint", "model", "upstream", "backend", "task",
    "stream", "request", "response", "status", "error", "finish_reason", "latency_ms",
    "ttft_ms", "prompt_tokens", "completion_tokens", "cost_usd", "student_version", "fallback",
    "api", "request_texts", "source",
)
COMPARISON_COLUMNS = (
    "created_at", "task", "version", "mode", "request_id", "score", "agree", "valid", "detail",
    "student", "teacher", "student_ms", "teacher_ms", "student_tokens", "teacher_tokens",
)
TEXT_COLUMNS = ("hash", "body", "created_at", "seen_at")
RESPONSE_COLUMNS = ("id", "key_id", "created_at", "model", "request_id", "previous_id",
                    "context", "response", "chained", "conversation_bytes")
# A response id written twice (a retried write) keeps the newest row; SQL both engines read.
RESPONSE_UPSERT = "ON CONFLICT (id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in RESPONSE_COLUMNS if c != "id")
# A static text seen again only moves its `seen_at` (what retention reads).
TEXT_UPSERT = "ON CONFLICT (hash) DO UPDATE SET seen_at = excluded.seen_at"


def insert_sql(table: str, columns: Sequence[str], *, rows: int = 1, mark: str = "?",
               conflict: str = "") -> str:
    """`INSERT INTO table (columns) VALUES (...)` for `rows` rows (one statement, so a batch
    is one round trip), then the `conflict` clause if any."""
    row = "(" + ", ".join(mark for _ in columns) + ")"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row] * rows)
    return f"{sql} {conflict}" if conflict else sql


def copy_sql(table: str, columns: Sequence[str]) -> str:
    """PostgreSQL's `COPY table (columns) FROM STDIN`, the fast way in for a batch."""
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN"


# The server-side secrets (the key of the sampling hashes): made once, for every process
# sharing the store, by whichever asks first (`db.read_secret`, `Store.secret`).
SECRET_INSERT = ("INSERT INTO secrets (name, value, created_at) VALUES ({mark}, {mark}, {mark}) "
                 "ON CONFLICT (name) DO NOTHING")
SECRET_SELECT = "SELECT value FROM secrets WHERE name = {mark}"


def new_secret(name: str) -> tuple[str, bytes, float]:
    """The row SECRET_INSERT writes if `name` has no secret yet."""
    return name, secrets.token_bytes(32), time.time()


# A response and the turns it continues, newest first in the walk
# (gateway/responses/conversations.py orders them): previous_id is followed while a row is
# chained. UNION drops an id seen before, so even a cycle written by hand ends.
RESPONSE_CHAIN = (
    "WITH RECURSIVE chain(id) AS (SELECT CAST({mark} AS TEXT) UNION "
    "SELECT r.previous_id FROM responses r JOIN chain c ON r.id = c.id "
    "WHERE r.chained = 1 AND r.previous_id IS NOT NULL) "
    "SELECT r.* FROM responses r JOIN chain c ON r.id = c.id")

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
