"""Tasks, students and held-out evaluations in the store (synchronous sqlite3).

Used by the distill worker and the CLI, which run outside the gateway's event loop. The
gateway reads the `tasks` table through its async `Store` with the same columns.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.store.db import Connection
from gateway.store.texts import TextLookup, restore


@dataclass
class TaskRecord:
    id: str
    label: str
    kind: str
    stage: str = "observe"
    explicit: bool = False
    info: dict[str, Any] = field(default_factory=dict)  # fingerprints, centroid, counts
    created_at: float = 0.0
    updated_at: float = 0.0
    step: int = 0  # canary step index while in canary
    stage_since: float | None = None  # when the current stage/step began
    student_version: int | None = None  # the student shadowed or serving
    pin: str | None = None  # operator pin: teacher | student
    named_by: str | None = None  # who renamed it (operator | admin:<key id>); None: mined


@dataclass
class StudentRecord:
    task: str
    version: int
    path: str
    base_model: str
    status: str  # passed | near (held-out upper bound only) | failed | error | rolled_back | pruned
    metrics: dict[str, Any]
    created_at: float = 0.0


def task_from_row(row: Mapping[str, Any]) -> TaskRecord:
    """A `tasks` row (sqlite3 or aiosqlite, as a mapping) as a TaskRecord."""
    return TaskRecord(
        id=row["id"], label=row["label"], kind=row["kind"], stage=row["stage"],
        explicit=bool(row["explicit"]), info=orjson.loads(row["info"]),
        created_at=row["created_at"], updated_at=row["updated_at"], step=row["step"],
        stage_since=row["stage_since"], student_version=row["student_version"], pin=row["pin"],
        named_by=row["named_by"],
    )


def _student(row: Any) -> StudentRecord:
    return StudentRecord(
        task=row["task"], version=row["version"], path=row["path"],
        base_model=row["base_model"], status=row["status"],
        metrics=orjson.loads(row["metrics"]), created_at=row["created_at"],
    )


def upsert_task(con: Connection, t: TaskRecord) -> None:
    """Insert or refresh a task; its stage is left alone (only policies change it), and so is
    a name an operator gave it (`rename_task`), even one given while discovery ran."""
    now = time.time()
    con.execute(
        "INSERT INTO tasks (id, label, kind, stage, explicit, info, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET label = CASE WHEN "
        "tasks.named_by IS NULL THEN excluded.label ELSE tasks.label END, "
        "kind = excluded.kind, info = excluded.info, updated_at = excluded.updated_at",
        (t.id, t.label, t.kind, t.stage, int(t.explicit), orjson.dumps(t.info).decode(), now, now),
    )


def list_tasks(con: Connection) -> list[TaskRecord]:
    return [task_from_row(r) for r in con.execute("SELECT * FROM tasks ORDER BY label")]


def get_task(con: Connection, task_id: str) -> TaskRecord | None:
    row = con.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return task_from_row(row) if row else None


def set_exchange_tasks(con: Connection, assignments: Iterable[tuple[str | None, int]]) -> None:
    """Back-fill task ids (task, seq) on exchanges recorded before the task was known (None:
    the row leaves a task that is not its tenant's)."""
    con.execute("BEGIN")
    con.executemany("UPDATE exchanges SET task = ? WHERE seq = ?", assignments)
    con.execute("COMMIT")


def chat_exchanges(
    con: Connection, since_seq: int = 0, *, task: str | None = None,
    newest: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Recorded chat exchanges with bodies, oldest first, decoded (optionally one task's, or
    only the `newest` ones). Judge calls (`backend = 'judge'`) are never task traffic."""
    where = ("endpoint = 'chat/completions' AND seq > ? AND request IS NOT NULL "
             "AND backend <> 'judge'")
    args: list[Any] = [since_seq]
    if task is not None:
        where += " AND task = ?"
        args.append(task)
    if newest is not None:
        where += " AND seq > COALESCE((SELECT seq FROM exchanges ORDER BY seq DESC " \
                 "LIMIT 1 OFFSET ?), 0)"
        args.append(newest)
    cur = con.execute(
        "SELECT seq, request_id, created_at, key_id, task, status, finish_reason, backend, "
        f"request, request_texts, response FROM exchanges WHERE {where} ORDER BY seq", args,
    )
    texts = TextLookup(con)
    for row in cur:
        yield {
            **{k: row[k] for k in ("seq", "request_id", "created_at", "key_id", "task",
                                   "status", "finish_reason", "backend")},
            "request": restore(orjson.loads(row["request"]), row["request_texts"], texts),
            "response": orjson.loads(row["response"]) if row["response"] else None,
        }


def next_version(con: Connection, task_id: str) -> int:
    row = con.execute("SELECT MAX(version) FROM students WHERE task = ?", (task_id,)).fetchone()
    return int(row[0] or 0) + 1


def add_student(con: Connection, s: StudentRecord) -> None:
    con.execute(
        "INSERT INTO students (task, version, path, base_model, status, metrics, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (s.task, s.version, s.path, s.base_model, s.status, orjson.dumps(s.metrics).decode(),
         s.created_at or time.time()),
    )


def list_students(con: Connection, task_id: str | None = None) -> list[StudentRecord]:
    if task_id is None:
        rows = con.execute("SELECT * FROM students ORDER BY task, version")
    else:
        rows = con.execute("SELECT * FROM students WHERE task = ? ORDER BY version", (task_id,))
    return [_student(r) for r in rows]


def best_student(con: Connection, task_id: str) -> StudentRecord | None:
    """The newest student of a task that passed its held-out gate or nearly passed it (status
    "near": its upper bound reached the bar): the one the gate takes into shadow."""
    row = con.execute(
        "SELECT * FROM students WHERE task = ? AND status IN ('passed', 'near') "
        "ORDER BY version DESC LIMIT 1",
        (task_id,),
    ).fetchone()
    return _student(row) if row else None


def add_evaluations(
    con: Connection, task_id: str, version: int, rows: Iterable[dict[str, Any]]
) -> None:
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO evaluations (task, version, request_id, score, agree, valid, detail, "
        "student, teacher, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(task_id, version, r["request_id"], r["score"], int(r["agree"]), int(r["valid"]),
          r.get("detail"), orjson.dumps(r.get("student")).decode(),
          orjson.dumps(r.get("teacher")).decode(), r.get("latency_ms")) for r in rows],
    )
    con.execute("COMMIT")
