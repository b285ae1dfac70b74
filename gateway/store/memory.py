"""The answer memory in the store: its stages per task (with their log), entries, and replays.

Synchronous, for the worker (distill/memory.py) and the CLI. Entries are append-only: a
withdrawn key is a new row with no answer, so gateways read changes by `seq` alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.store.db import Connection
from gateway.store.stages import notify_task_change


@dataclass(frozen=True, slots=True)
class TrackRecord:
    task: str
    stage: str
    step: int
    stage_since: float
    scanned_seq: int
    entries: int


def memory_tracks(con: Connection) -> dict[str, TrackRecord]:
    return {r["task"]: TrackRecord(r["task"], r["stage"], int(r["step"]), float(r["stage_since"]),
                                   int(r["scanned_seq"]), int(r["entries"]))
            for r in con.execute("SELECT * FROM memory_tracks")}


def open_track(con: Connection, task: str, since: float, now: float | None = None) -> None:
    """Start a task's memory in observe, its evidence counted from `since`."""
    con.execute("INSERT INTO memory_tracks (task, stage, step, stage_since, updated_at) "
                "VALUES (?, 'observe', 0, ?, ?) ON CONFLICT (task) DO NOTHING",
                (task, since, time.time() if now is None else now))


def set_memory_stage(con: Connection, track: TrackRecord, to_stage: str, to_step: int, *,
                     reason: str, evidence: dict[str, Any], now: float) -> None:
    """Move a task's memory to a stage and log why, in one transaction."""
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute("UPDATE memory_tracks SET stage = ?, step = ?, stage_since = ?, "
                    "updated_at = ? WHERE task = ?", (to_stage, to_step, now, now, track.task))
        con.execute("INSERT INTO memory_changes (at, task, from_stage, from_step, to_stage, "
                    "to_step, reason, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (now, track.task, track.stage, track.step, to_stage, to_step, reason,
                     orjson.dumps(evidence, default=str).decode()))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    notify_task_change(con, track.task)


def memory_changes(con: Connection, task: str | None = None) -> list[dict[str, Any]]:
    sql, args = "SELECT * FROM memory_changes", []
    if task is not None:
        sql, args = sql + " WHERE task = ?", [task]
    return [dict(r) for r in con.execute(sql + " ORDER BY seq", args)]


def write_scan(con: Connection, task: str, scanned_seq: int, entries: int,
               added: Sequence[tuple[str, str, str | None]], withdrawn: Iterable[str],
               replays: Sequence[Sequence[Any]], now: float) -> None:
    """One scan's results in one transaction: entries (key, answer JSON, usage JSON) added,
    keys withdrawn, replayed comparisons (COMPARISON_COLUMNS order), and how far it read."""
    con.execute("BEGIN IMMEDIATE")
    try:
        for key in withdrawn:
            con.execute("INSERT INTO memory_entries (task, key, answer, usage, created_at) "
                        "VALUES (?, ?, NULL, NULL, ?)", (task, key, now))
        for key, answer, usage in added:
            con.execute("INSERT INTO memory_entries (task, key, answer, usage, created_at) "
                        "VALUES (?, ?, ?, ?, ?)", (task, key, answer, usage, now))
        for row in replays:
            con.execute("INSERT INTO comparisons (created_at, task, version, mode, request_id, "
                        "score, agree, valid, detail, student, teacher, student_ms, teacher_ms, "
                        "student_tokens, teacher_tokens) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        con.execute("UPDATE memory_tracks SET scanned_seq = ?, entries = ?, updated_at = ? "
                    "WHERE task = ?", (scanned_seq, entries, now, task))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def stored_entries(con: Connection, task: str) -> dict[str, tuple[str | None, float]]:
    """The latest state of each key of a task's memory: its answer JSON (None if withdrawn)
    and when it was written."""
    out: dict[str, tuple[str | None, float]] = {}
    for r in con.execute("SELECT key, answer, created_at FROM memory_entries WHERE task = ? "
                         "ORDER BY seq", (task,)):
        out[r["key"]] = (r["answer"], float(r["created_at"]))
    return out


def audit_disagreements(con: Connection, task: str, version: int,
                        after_seq: int) -> list[tuple[int, str]]:
    """(seq, request id) of audits of the memory that disagreed, after comparison `after_seq`."""
    return [(int(r["seq"]), r["request_id"]) for r in con.execute(
        "SELECT seq, request_id FROM comparisons WHERE task = ? AND version = ? "
        "AND mode = 'audit' AND agree = 0 AND seq > ? ORDER BY seq",
        (task, version, after_seq))]
