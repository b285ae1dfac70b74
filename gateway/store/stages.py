"""Task stages in the store: changing them (with the audit log), pins, and the evidence the
gate reads (live comparisons, student-served requests, fallbacks, latency).

Synchronous sqlite3, for the worker, the CLI and the admin API (in a thread). Every stage
change and the log line describing it are written in one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.store.db import Connection, count_if, dialect
from policies.sequential import checkpoints
from policies.settings import PINS
from policies.stages import STAGES
from policies.stats import percentile

ERROR_FALLBACKS = ("timeout", "error")  # fallbacks caused by the student failing outright
TASKS_CHANNEL = "slimgate_tasks"  # PostgreSQL NOTIFY channel: a task's routing changed


def notify_task_change(con: Connection, task_id: str) -> None:
    """On PostgreSQL, tell every listening gateway replica to re-read the tasks now (on
    SQLite replicas poll every `students.refresh_s`)."""
    if dialect(con) == "postgres":
        con.execute("SELECT pg_notify(?, ?)", (TASKS_CHANNEL, task_id))


@dataclass
class StageChange:
    seq: int
    at: float
    task: str
    from_stage: str
    from_step: int
    to_stage: str
    to_step: int
    version: int | None
    actor: str
    reason: str
    evidence: dict[str, Any]


def set_stage(
    con: Connection,
    task_id: str,
    to_stage: str,
    *,
    to_step: int = 0,
    version: int | None = None,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    now: float | None = None,
) -> StageChange:
    """Move a task to a stage (and canary step) and log why, atomically."""
    if to_stage not in STAGES:
        raise ValueError(f"unknown stage {to_stage!r}; stages are {', '.join(STAGES)}")
    now = time.time() if now is None else now
    con.execute("BEGIN IMMEDIATE")
    try:
        row = con.execute(
            "SELECT stage, step, student_version FROM tasks WHERE id = ?", (task_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"task '{task_id}' does not exist")
        if version is None:
            version = row["student_version"]
        con.execute(
            "UPDATE tasks SET stage = ?, step = ?, stage_since = ?, student_version = ?, "
            "updated_at = ? WHERE id = ?",
            (to_stage, to_step, now, version, now, task_id),
        )
        seq = con.execute(
            "INSERT INTO stage_changes (at, task, from_stage, from_step, to_stage, to_step, "
            "version, actor, reason, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING seq",
            (now, task_id, row["stage"], row["step"], to_stage, to_step, version, actor, reason,
             orjson.dumps(evidence or {}).decode()),
        ).fetchone()[0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    notify_task_change(con, task_id)
    return StageChange(
        int(seq), now, task_id, row["stage"], row["step"], to_stage, to_step,
        version, actor, reason, evidence or {},
    )


def set_pin(con: Connection, task_id: str, pin: str | None) -> None:
    if pin is not None and pin not in PINS:
        raise ValueError(f"pin must be 'teacher' or 'student', not {pin!r}")
    cur = con.execute(
        "UPDATE tasks SET pin = ?, updated_at = ? WHERE id = ?", (pin, time.time(), task_id)
    )
    if cur.rowcount == 0:
        raise KeyError(f"task '{task_id}' does not exist")
    notify_task_change(con, task_id)


def set_student_status(con: Connection, task_id: str, version: int, status: str) -> None:
    con.execute(
        "UPDATE students SET status = ? WHERE task = ? AND version = ?", (status, task_id, version)
    )


def stage_changes(
    con: Connection, task_id: str | None = None, limit: int = 200
) -> list[StageChange]:
    sql = "SELECT * FROM stage_changes"
    args: list[Any] = []
    if task_id is not None:
        sql += " WHERE task = ?"
        args.append(task_id)
    sql += " ORDER BY seq DESC LIMIT ?"
    args.append(limit)
    return [
        StageChange(
            r["seq"], r["at"], r["task"], r["from_stage"], r["from_step"], r["to_stage"],
            r["to_step"], r["version"], r["actor"], r["reason"],
            orjson.loads(r["evidence"] or "{}"),
        )
        for r in con.execute(sql, args)
    ][::-1]


def live_evidence(
    con: Connection, task_id: str, version: int, since: float
) -> dict[str, Any]:
    """What live traffic says about one student version since `since` (plain numbers)."""
    n, agree = con.execute(
        "SELECT COUNT(*), COALESCE(SUM(agree), 0) FROM comparisons "
        "WHERE task = ? AND version = ? AND created_at >= ?",
        (task_id, version, since),
    ).fetchone()
    marks = ", ".join("?" for _ in ERROR_FALLBACKS)
    served, fallbacks, errors = con.execute(
        f"SELECT COUNT(*), COALESCE({count_if('fallback IS NOT NULL')}, 0), "
        f"COALESCE({count_if(f'fallback IN ({marks})')}, 0) "
        "FROM exchanges WHERE task = ? AND student_version = ? AND created_at >= ?",
        (*ERROR_FALLBACKS, task_id, version, since),
    ).fetchone()
    latencies = [
        r[0] for r in con.execute(
            "SELECT latency_ms FROM exchanges WHERE task = ? AND student_version = ? "
            "AND backend = 'student' AND created_at >= ? AND latency_ms IS NOT NULL "
            "ORDER BY seq DESC LIMIT 2000",
            (task_id, version, since),
        )
    ]
    p95 = percentile(latencies, 95)
    return {
        "live_n": int(n), "live_agree": int(agree), "student_served": int(served),
        "fallbacks": int(fallbacks), "student_errors": int(errors), "student_p95_ms": p95,
    }


def shadow_since(con: Connection, task_id: str, version: int,
                 table: str = "stage_changes") -> float | None:
    """When this student version (last) entered shadow: where its pooled evidence begins.
    `table` is `memory_changes` for the answer memory's own stages."""
    if table not in ("stage_changes", "memory_changes"):
        raise ValueError(f"no stage log {table!r}")
    version_is = "version = ? AND " if table == "stage_changes" else ""
    args = (version, task_id) if version_is else (task_id,)
    row = con.execute(f"SELECT MAX(at) FROM {table} WHERE {version_is}task = ? "
                      "AND to_stage = 'shadow'", args).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def count_comparisons(con: Connection, task_id: str, version: int, since: float) -> int:
    row = con.execute("SELECT COUNT(*) FROM comparisons WHERE task = ? AND version = ? "
                      "AND created_at >= ?", (task_id, version, since)).fetchone()
    return int(row[0])


def live_prefix_agree(
    con: Connection, task_id: str, version: int, since: float, sizes: list[int]
) -> tuple[int, ...]:
    """Agreements among the first `size` live comparisons of a student since `since`, in the
    order they were recorded, for each size (the shadow exit's checkpoints)."""
    return tuple(
        int(con.execute(
            "SELECT COALESCE(SUM(agree), 0) FROM (SELECT agree FROM comparisons "
            "WHERE task = ? AND version = ? AND created_at >= ? ORDER BY seq LIMIT ?) AS first",
            (task_id, version, since, size),
        ).fetchone()[0])
        for size in sizes
    )


def count_task_examples(con: Connection, task_id: str) -> int:
    """Successful teacher answers recorded for a task (what a retrain would learn from)."""
    row = con.execute(
        "SELECT COUNT(*) FROM exchanges WHERE task = ? AND status = 200 AND backend = 'teacher' "
        "AND endpoint = 'chat/completions'",
        (task_id,),
    ).fetchone()
    return int(row[0])


def pooled_prefix(con: Connection, task_id: str, version: int, stage: str, since: float,
                  live_n: int, min_live: int, table: str = "stage_changes") -> tuple[int, ...]:
    """The looks at a version's live evidence since it entered shadow (shadow's exit and each
    canary step test these); in shadow that is the stage's own evidence."""
    start = since
    if stage == "canary":
        start = shadow_since(con, task_id, version, table) or since
        live_n = count_comparisons(con, task_id, version, start)
    return live_prefix_agree(con, task_id, version, start, checkpoints(live_n, min_live))
