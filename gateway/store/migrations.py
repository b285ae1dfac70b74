"""Schema versions of the store, applied in order: `MIGRATIONS` (SQLite's dialect, translated
for PostgreSQL by `pg_schema`) and `migrate`, which brings a SQLite file up to date.

`PRAGMA user_version` holds the version a file is at; opening a file runs every later
migration in one write transaction (processes opening it at once migrate it once), so a
newer slimgate opens an older file and never the reverse silently (a file from a newer
slimgate is refused). Plain sqlite3 on purpose: `db.connect` runs it, in a thread when the
gateway opens its async store. Nothing here opens a store: that is `gateway.store.db`.
"""

from __future__ import annotations

import sqlite3

from gateway.store.errors import StoreError

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
    # 2: discovered tasks, trained students and their per-example held-out scores
    """
    CREATE TABLE tasks (
        id            TEXT PRIMARY KEY,
        label         TEXT NOT NULL,
        kind          TEXT NOT NULL,          -- tool_call, json, label, text
        stage         TEXT NOT NULL DEFAULT 'observe',
        explicit      INTEGER NOT NULL DEFAULT 0,  -- named by the client, not discovered
        info          TEXT NOT NULL,          -- JSON: fingerprints, centroid, counts, lengths
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL
    );
    CREATE TABLE students (
        task          TEXT NOT NULL,
        version       INTEGER NOT NULL,
        path          TEXT NOT NULL,          -- relative to distill.students_dir
        base_model    TEXT NOT NULL,
        status        TEXT NOT NULL,          -- passed, failed (held-out gate)
        metrics       TEXT NOT NULL,          -- JSON: agreement, interval, valid rate, latency
        created_at    REAL NOT NULL,
        PRIMARY KEY (task, version)
    );
    CREATE TABLE evaluations (
        task          TEXT NOT NULL,
        version       INTEGER NOT NULL,
        request_id    TEXT NOT NULL,
        score         REAL NOT NULL,
        agree         INTEGER NOT NULL,
        valid         INTEGER NOT NULL,
        detail        TEXT,
        student       TEXT,                   -- JSON assistant message
        teacher       TEXT,                   -- JSON assistant message
        latency_ms    REAL
    );
    CREATE INDEX evaluations_task ON evaluations(task, version);
    """,
    # 3: routing state per task, live shadow/audit comparisons, the stage-change audit log
    """
    ALTER TABLE exchanges ADD COLUMN student_version INTEGER;  -- student that served it
    ALTER TABLE exchanges ADD COLUMN fallback TEXT;  -- why a student answer was replaced
    ALTER TABLE tasks ADD COLUMN step INTEGER NOT NULL DEFAULT 0;  -- canary step index
    ALTER TABLE tasks ADD COLUMN stage_since REAL;  -- when the current stage/step began
    ALTER TABLE tasks ADD COLUMN student_version INTEGER;  -- student shadowed or serving
    ALTER TABLE tasks ADD COLUMN pin TEXT;  -- operator pin: teacher | student
    CREATE TABLE comparisons (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at    REAL NOT NULL,
        task          TEXT NOT NULL,
        version       INTEGER NOT NULL,       -- student version compared
        mode          TEXT NOT NULL,          -- shadow (teacher served) | audit (student served)
        request_id    TEXT NOT NULL,
        score         REAL NOT NULL,
        agree         INTEGER NOT NULL,
        valid         INTEGER NOT NULL,
        detail        TEXT,
        student       TEXT,                   -- JSON assistant message
        teacher       TEXT,                   -- JSON assistant message
        student_ms    REAL,
        teacher_ms    REAL,
        student_tokens INTEGER,
        teacher_tokens INTEGER
    );
    CREATE INDEX comparisons_task ON comparisons(task, version, created_at);
    CREATE TABLE stage_changes (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        at            REAL NOT NULL,
        task          TEXT NOT NULL,
        from_stage    TEXT NOT NULL,
        from_step     INTEGER NOT NULL,
        to_stage      TEXT NOT NULL,
        to_step       INTEGER NOT NULL,
        version       INTEGER,                -- student version concerned
        actor         TEXT NOT NULL,          -- policy | operator | distill
        reason        TEXT NOT NULL,
        evidence      TEXT                    -- JSON: the numbers behind the decision
    );
    CREATE INDEX stage_changes_task ON stage_changes(task, at);
    """,
    # 4: the API a client called (a Responses request is recorded in its chat form, so
    # the loop learns from both), and stored Responses API state for previous_response_id
    """
    ALTER TABLE exchanges ADD COLUMN api TEXT;  -- chat/completions, ..., responses
    UPDATE exchanges SET api = endpoint;
    CREATE TABLE responses (
        id            TEXT PRIMARY KEY,       -- resp_...
        key_id        TEXT,                   -- hash of the gateway key that created it
        created_at    REAL NOT NULL,
        model         TEXT NOT NULL,
        request_id    TEXT NOT NULL,
        previous_id   TEXT,                   -- previous_response_id it continued
        context       TEXT NOT NULL,          -- JSON: every input item, earlier turns first
        response      TEXT NOT NULL           -- JSON: the Response object as answered
    );
    CREATE INDEX responses_key_time ON responses(key_id, created_at);
    """,
    # 5: server-side secrets (the key of the sampling hashes), made on first use
    """
    CREATE TABLE secrets (
        name          TEXT PRIMARY KEY,
        value         BLOB NOT NULL,
        created_at    REAL NOT NULL
    );
    """,
    # 6: static text stored once: system prompts, tool sets and response formats repeat in
    # nearly every agent request; an exchange keeps a reference to each (gateway/store/texts.py)
    """
    CREATE TABLE texts (
        hash          TEXT PRIMARY KEY,       -- sha256 of the JSON text, hex
        body          TEXT NOT NULL,          -- the JSON value as it was sent
        created_at    REAL NOT NULL,
        seen_at       REAL NOT NULL           -- last written by a recorder (retention)
    );
    ALTER TABLE exchanges ADD COLUMN request_texts TEXT;  -- JSON {place: hash} cut from request
    CREATE INDEX comparisons_time ON comparisons(created_at);
    CREATE INDEX responses_time ON responses(created_at);
    """,
    # 7: a stored response keeps its own turn only (its new input items and its answer) and
    # reaches the earlier turns through previous_id; rows from before keep every input item
    # of their conversation (chained = 0) and stay readable as they are
    """
    ALTER TABLE responses ADD COLUMN chained INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE responses ADD COLUMN conversation_bytes INTEGER;  -- JSON bytes of all turns
    """,
    # 8: the answer memory (gateway/answer_memory.py, distill/memory.py): per task, the
    # teacher's answer to each exact request it answered consistently, with its own stages
    """
    CREATE TABLE memory_tracks (
        task          TEXT PRIMARY KEY,
        stage         TEXT NOT NULL,          -- observe, shadow, canary, primary
        step          INTEGER NOT NULL DEFAULT 0,
        stage_since   REAL NOT NULL,
        scanned_seq   INTEGER NOT NULL DEFAULT 0,  -- exchanges read up to here
        entries       INTEGER NOT NULL DEFAULT 0,  -- answers it holds
        updated_at    REAL NOT NULL
    );
    CREATE TABLE memory_entries (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        task          TEXT NOT NULL,
        key           TEXT NOT NULL,          -- gateway.answer_memory.memory_key
        answer        TEXT,                   -- JSON assistant message; NULL: withdrawn
        usage         TEXT,                   -- JSON usage of the teacher's answer
        created_at    REAL NOT NULL
    );
    CREATE INDEX memory_entries_task ON memory_entries(task, seq);
    CREATE TABLE memory_changes (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        at            REAL NOT NULL,
        task          TEXT NOT NULL,
        from_stage    TEXT NOT NULL,
        from_step     INTEGER NOT NULL,
        to_stage      TEXT NOT NULL,
        to_step       INTEGER NOT NULL,
        reason        TEXT NOT NULL,
        evidence      TEXT NOT NULL
    );
    """,
    # 9: where an exchange came from: NULL for live traffic, "import:<format>" for history
    # brought in by `slimgate traces import` (reports count live traffic only by default)
    """
    ALTER TABLE exchanges ADD COLUMN source TEXT;
    """,
    # 10: a task an operator renamed keeps that name across re-discovery
    """
    ALTER TABLE tasks ADD COLUMN named_by TEXT;  -- operator | admin:<key id>; NULL: mined
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """A migration script as single statements (sqlite3's own notion of a complete one)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def migrate(con: sqlite3.Connection) -> int:
    """Bring the file to SCHEMA_VERSION; returns the version it was at. The version is read
    inside a write transaction, so processes opening a new file at once migrate it once."""
    con.execute("BEGIN IMMEDIATE")  # waits (busy_timeout) while another process migrates
    try:
        current = int(con.execute("PRAGMA user_version").fetchone()[0])
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store is at schema version {current}, newer than this slimgate "
                f"({SCHEMA_VERSION})")
        for version in range(current, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[version]):
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {version + 1}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return current
