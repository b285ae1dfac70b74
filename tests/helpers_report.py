"""A synthetic store for the report and dashboard tests: two tasks over ten hours.

`build_store` writes them straight into a migrated store (a SQLite path or a PostgreSQL URL):
`extract-invoice` promoted observe → shadow → canary → primary with good agreement, and
`triage-ticket` held back in shadow with disagreements (one student answer carries a
`<script>` tag). It returns the numbers a correct report must show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from gateway.store.db import connect
from gateway.store.stages import set_stage

NOW = 1_750_000_000.0
T0 = NOW - 10 * 3600
HOUR = 3600.0
SCRIPT = '<script>alert("pwned")</script>'
A, B = "extract-invoice", "triage-ticket"


def insert_row(con: Any, table: str, row: dict[str, Any]) -> None:
    """INSERT one row given as {column: value}."""
    cols = ", ".join(row)
    con.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()))


def exchange_row(i: int, task: str | None, t: float, **kw: Any) -> dict[str, Any]:
    """The `i`th teacher exchange of `task` at time `t`; `kw` overrides columns."""
    row = {"request_id": f"{task}-{i}", "created_at": t, "endpoint": "chat/completions",
           "model": "gpt-test", "backend": "teacher", "task": task, "stream": 0, "status": 200,
           "latency_ms": 800.0 + (i % 7) * 10, "prompt_tokens": 100, "completion_tokens": 20,
           "cost_usd": 0.002}
    row.update(kw)
    return row


def message_json(text: str) -> str:
    """An assistant message answering `text`, as the store keeps it."""
    return orjson.dumps({"role": "assistant", "content": text}).decode()


def comparison_row(task: str, version: int, mode: str, t: float, rid: str, agree: bool,
                   student: str = "ok", score: float | None = None) -> dict[str, Any]:
    """A student-teacher comparison (`mode`: shadow or audit) of request `rid`."""
    return {"created_at": t, "task": task, "version": version, "mode": mode, "request_id": rid,
            "score": (1.0 if agree else 0.3) if score is None else score, "agree": int(agree),
            "valid": 1, "detail": "same answer" if agree else "different label",
            "student": message_json(student), "teacher": message_json("ok"), "student_ms": 110.0,
            "teacher_ms": 820.0}


def _share_at(t: float, t0: float) -> int:
    """Student share of extract-invoice over time: its stage history below."""
    h = (t - t0) / HOUR
    return 0 if h < 3 else 5 if h < 4 else 25 if h < 5 else 50 if h < 6 else 100


def build_store(path: Path | str, end: float = NOW) -> dict[str, Any]:
    """Write the synthetic store (10 hours ending at `end`); returns the numbers a correct
    report must show."""
    T0 = end - 10 * HOUR  # noqa: N806 - the same T0 as the module's when end is NOW
    con = connect(str(path))  # a SQLite path or a PostgreSQL URL
    exp: dict[str, Any] = {"served": 0, "fallbacks": {}, "attempts": 0}
    con.execute("BEGIN")
    for tid, label, kind in [(A, "extract_invoice", "json"), (B, "triage_ticket", "label")]:
        insert_row(con, "tasks", {"id": tid, "label": label, "kind": kind, "info": "{}",
                                  "created_at": T0, "updated_at": T0})
    for task, version, status, base in [(A, 1, "passed", "scratch:tiny"),
                                        (B, 1, "rolled_back", "scratch:tiny"),
                                        (B, 2, "passed", "scratch:small")]:
        insert_row(con, "students", {
            "task": task, "version": version, "path": f"{task}/{version}", "base_model": base,
            "status": status, "created_at": T0,
            "metrics": json.dumps({"student_p50_ms": 95.0})})
    for i in range(100):  # held-out: A v1 97/100, B v2 45/50
        insert_row(con, "evaluations", {
            "task": A, "version": 1, "request_id": f"{A}-{i}",
            "score": 1.0 if i >= 3 else 0.2 * (i + 1), "agree": int(i >= 3), "valid": 1,
            "student": message_json("s"), "teacher": message_json("t")})
    for i in range(50):
        insert_row(con, "evaluations", {
            "task": B, "version": 2, "request_id": f"{B}-{i}",
            "score": 1.0 if i >= 5 else 0.1, "agree": int(i >= 5), "valid": 1,
            "student": message_json("billing"), "teacher": message_json("bug")})
    for i in range(1000):  # A: 1000 requests over 10 h, the student's share rising by stage
        t = T0 + 36 * i + 1
        if (i % 100) >= _share_at(t, T0):
            insert_row(con, "exchanges", exchange_row(i, A, t))
            continue
        exp["attempts"] += 1
        if _share_at(t, T0) == 100 and i % 40 == 0:  # in primary: every 40th broke its contract
            reason = "invalid_json" if i % 80 == 0 else "timeout"
            exp["fallbacks"][reason] = exp["fallbacks"].get(reason, 0) + 1
            insert_row(con, "exchanges", exchange_row(i, A, t, student_version=1, fallback=reason))
        else:
            exp["served"] += 1
            insert_row(con, "exchanges", exchange_row(
                i, A, t, backend="student", student_version=1, cost_usd=None,
                latency_ms=120.0 + (i % 5) * 5))
    for i in range(500):  # B: teacher only, with request bodies for the worst-answers table
        body = {"model": "gpt-test", "messages": [
            {"role": "system", "content": "Label the ticket."},
            {"role": "user", "content": f"Ticket #{i}: the printer is on fire"}]}
        insert_row(con, "exchanges", exchange_row(i, B, T0 + 72 * i + 5, cost_usd=0.001,
                                                  request=json.dumps(body)))
    for i in range(20):
        insert_row(con, "exchanges", exchange_row(i, None, T0 + 100 * i))
    for i in range(200):  # A shadow 196/200 in hours 1-3, audit 99/100 in hours 3-10
        insert_row(con, "comparisons", comparison_row(A, 1, "shadow", T0 + HOUR + 36 * i,
                                                      f"{A}-{i}", i % 50 != 25))
    for i in range(100):
        insert_row(con, "comparisons", comparison_row(A, 1, "audit", T0 + 3 * HOUR + 252 * i,
                                                      f"{A}-{i}", i != 7))
    for i in range(30):  # B v1 (rolled back) 18/30; B v2 60/80, one answer with a script tag
        insert_row(con, "comparisons", comparison_row(B, 1, "shadow", T0 + 0.5 * HOUR + 60 * i,
                                                      f"{B}-{i}", i < 18))
    for i in range(80):
        student = SCRIPT if i == 77 else "billing"
        insert_row(con, "comparisons", comparison_row(B, 2, "shadow", T0 + 2 * HOUR + 360 * i,
                                                      f"{B}-{i + 100}", i % 4 != 1, student,
                                                      score=0.05 if i == 77 else None))
    con.execute("COMMIT")
    for hours, stage, step, reason in [(1, "shadow", 0, "held-out gate passed"),
                                       (3, "canary", 0, "live lower bound 0.95 >= 0.90"),
                                       (4, "canary", 1, "step held 1 h"),
                                       (5, "canary", 2, "step held 1 h"),
                                       (6, "primary", 0, "last canary step passed")]:
        set_stage(con, A, stage, to_step=step, version=1, actor="distill" if hours == 1 else
                  "policy", reason=reason, now=T0 + hours * HOUR)
    set_stage(con, B, "shadow", version=1, actor="distill", reason="held-out gate passed",
              now=T0 + 0.5 * HOUR)
    set_stage(con, B, "observe", version=1, actor="policy", reason="live agreement too low",
              now=T0 + HOUR)
    set_stage(con, B, "shadow", version=2, actor="distill", reason="retrained", now=T0 + 2 * HOUR)
    con.close()
    return exp
