"""Schema versions of the SQLite store, applied in order.

`PRAGMA user_version` holds the version a file is at; opening a file runs every later
migration in one transaction, so a newer slimgate opens an older file and never the
reverse silently (a file from a newer slimgate is refused).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: recorded exchanges
    """
    CREATE TABLE exchanges (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id        TEXT NOT NULL,
        created_at        REAL NOT NULL,      -- unix seconds when the request arrived
        key_id            TEXT,               -- short hash of the gateway key, never the key
        endpoint          TEXT NOT NULL,      -- chat/completions, completions, embeddings
        model             TEXT NOT NULL,      -- model name the client asked for
        upstream          TEXT,               -- configured model that answered (after fallbacks)
        backend           TEXT NOT NULL DEFAULT 'teacher',
        task              TEXT,
        stream            INTEGER NOT NULL,
        request           TEXT,               -- JSON body as sent by the client
        response          TEXT,               -- JSON answer; streams assembled into one object
        status            INTEGER NOT NULL,   -- HTTP status the client got
        error             TEXT,
        finish_reason     TEXT,
        latency_ms        REAL,
        ttft_ms           REAL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        cost_usd          REAL
    );
    CREATE INDEX exchanges_request_id ON exchanges(request_id);
    CREATE INDEX exchanges_task_time ON exchanges(task, created_at);
    CREATE INDEX exchanges_time ON exchanges(created_at);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
