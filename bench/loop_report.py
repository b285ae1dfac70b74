"""The loop benchmark's findings: per task, when it trained, moved and first served a student,
the student's share of each minute's traffic, and the invalid answers clients received.

`snapshot` reads the store (tasks, students, stage changes, each request's task) read-only;
`summarize` joins it with what the client saw; `print_table` prints it.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any


@dataclass
class Sent:
    """One request as the client saw it."""

    i: int  # position in the schedule; also its x-request-id (lb-<i>)
    kind: str  # workload type
    at: float  # seconds after the first request was sent
    latency_ms: float = 0.0
    backend: str = ""  # the x-slimgate-backend header: teacher | student ("" on an error)
    task: str = ""  # the x-slimgate-task header, or the store's task for the request
    error: str = ""  # why no answer came back
    invalid: str = ""  # why the answer broke the request's contract (bench.loop_check)
    gold: bool = False  # the answer is the public gold answer
    key: str = ""  # gateway.fingerprint.request_key: what was asked (curation dedupes on it)
    memory: bool = False  # answered by the task's answer memory (the store's upstream column)


def snapshot(db: str) -> dict[str, Any]:
    """Tasks, students, stage changes and request → task from a SQLite store, read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        def rows(sql: str) -> list[dict[str, Any]]:
            return [dict(r) for r in con.execute(sql)]
        return {
            "tasks": rows("SELECT id, label, kind, stage, step, created_at FROM tasks"),
            "students": rows("SELECT task, version, base_model, status, created_at, "
                             "json_extract(metrics, '$.agreement') AS agreement, "
                             "json_extract(metrics, '$.student_kind') AS student_kind "
                             "FROM students ORDER BY created_at"),
            "changes": rows("SELECT at, task, from_stage, to_stage, to_step, actor, reason "
                            "FROM stage_changes ORDER BY at"),
            "request_task": {r["request_id"]: r["task"] for r in rows(
                "SELECT request_id, task FROM exchanges WHERE task IS NOT NULL")},
            "memory_changes": rows("SELECT at, task, from_stage, to_stage, to_step, reason "
                                   "FROM memory_changes ORDER BY at"),
            "from_memory": {r["request_id"] for r in rows(
                "SELECT request_id FROM exchanges WHERE upstream LIKE 'memory:%'")},
        }
    except sqlite3.Error:
        return {"tasks": [], "students": [], "changes": [], "request_task": {},
                "memory_changes": [], "from_memory": set()}
    finally:
        con.close()


def _first(values: list[float]) -> float | None:
    return round(min(values), 1) if values else None


def _per_minute(sent: list[Sent], minutes: int) -> list[float | None]:
    total, student = Counter[int](), Counter[int]()
    for s in sent:
        if not s.error:
            total[int(s.at // 60)] += 1
            student[int(s.at // 60)] += s.backend == "student"
    return [round(student[m] / total[m], 3) if total[m] else None for m in range(minutes)]


def _repeat_share(mine: list[Sent]) -> float | None:
    """Share of requests whose exact request came before: what an answer memory (request ->
    the teacher's earlier answer) could have served, at most; exact with a replay teacher."""
    seen: set[str] = set()
    repeats = 0
    for s in sorted(mine, key=lambda s: s.at):
        repeats += s.key in seen
        seen.add(s.key)
    return round(repeats / len(mine), 3) if mine else None


def summarize(sent: list[Sent], snap: dict[str, Any], t0: float, minutes: int) -> dict[str, Any]:
    """Per discovered task and per workload type; times in seconds after the first request."""
    for s in sent:
        s.task = s.task or snap["request_task"].get(f"lb-{s.i}", "")
        s.memory = f"lb-{s.i}" in snap["from_memory"]
    by_task: dict[str, list[Sent]] = defaultdict(list)
    by_kind: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        by_task[s.task].append(s)
        by_kind[s.kind].append(s)
    tasks = []
    for t in sorted(snap["tasks"], key=lambda t: t["created_at"]):
        mine = by_task.get(t["id"], [])
        kinds = Counter(s.kind for s in mine)
        trained = [s for s in snap["students"] if s["task"] == t["id"] and s["status"] != "error"]
        moves = [c for c in snap["changes"] if c["task"] == t["id"]]
        memory = [c for c in snap["memory_changes"] if c["task"] == t["id"]]
        tasks.append({
            "task": t["id"], "label": t["label"], "kind": t["kind"],
            "workload_type": kinds.most_common(1)[0][0] if kinds else None,
            "types_seen": dict(kinds), "stage": t["stage"], "step": t["step"],
            "requests": len(mine), "distinct": len({s.key for s in mine}),
            "discovered_s": round(t["created_at"] - t0, 1),
            "first_trained_s": _first([s["created_at"] - t0 for s in trained]),
            "students": [{k: s[k] for k in ("version", "base_model", "student_kind", "status",
                                            "agreement")} | {"at_s": round(s["created_at"] - t0, 1)}
                         for s in snap["students"] if s["task"] == t["id"]],
            **{f"first_{stage}_s": _first([c["at"] - t0 for c in moves if c["to_stage"] == stage])
               for stage in ("shadow", "canary", "primary")},
            "rollbacks": sum(c["to_stage"] == "observe" for c in moves),
            **{f"memory_{stage}_s": _first([c["at"] - t0 for c in memory
                                            if c["to_stage"] == stage])
               for stage in ("shadow", "canary", "primary")},
            "first_student_answer_s": _first([s.at for s in mine if s.backend == "student"]),
            "student_share_per_minute": _per_minute(mine, minutes),
            "invalid_to_client": sum(bool(s.invalid) for s in mine),
        })
    kinds_out = {}
    for kind, mine in sorted(by_kind.items()):
        answered = [s for s in mine if not s.error]
        student = [s for s in answered if s.backend == "student"]
        teacher = [s for s in answered if s.backend != "student"]
        kinds_out[kind] = {
            "requests": len(mine), "distinct": len({s.key for s in mine}),
            "errors": len(mine) - len(answered),
            "student_answers": len(student),
            "memory_answers": sum(s.memory for s in student),
            "student_share": round(len(student) / len(answered), 3) if answered else None,
            "repeat_share": _repeat_share(mine),
            "student_share_per_minute": _per_minute(mine, minutes),
            "invalid_to_client": {b: sum(bool(s.invalid) for s in answered if s.backend == b)
                                  for b in ("teacher", "student")},
            "invalid_examples": sorted({s.invalid for s in answered if s.invalid})[:5],
            "gold_match": {b: round(sum(s.gold for s in g) / len(g), 3) if g else None
                           for b, g in (("teacher", teacher), ("student", student))},
            "untasked_requests": sum(not s.task for s in mine),
        }
    return {"tasks": tasks, "types": kinds_out,
            "stage_changes": [{**c, "at": round(c["at"] - t0, 1)} for c in snap["changes"]],
            "memory_changes": [{**c, "at": round(c["at"] - t0, 1)}
                               for c in snap["memory_changes"]]}


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _shares(v: list[float | None]) -> str:
    return " ".join("." if x is None else f"{100 * x:.0f}" for x in v)


def print_table(summary: dict[str, Any]) -> None:
    print("\nper discovered task (seconds after the first request; '-' = not reached; dist: "
          "distinct requests; 1st st: first student answer; inv: invalid answers received)")
    head = (f"{'task':<24} {'type':<13} {'kind':<9} {'stage':<9} {'reqs':>5} {'dist':>4} "
            f"{'train':>6} {'shadow':>6} {'canary':>6} {'mem c/p':>9} {'1st st':>6} {'inv':>4}  "
            "student % per minute")
    print(head)
    print("-" * len(head))
    for t in summary["tasks"]:
        stage = t["stage"] + (f"@{t['step']}" if t["stage"] == "canary" else "")
        print(f"{t['label'][:24]:<24} {str(t['workload_type'] or '?')[:13]:<13} "
              f"{t['kind'][:9]:<9} {stage[:9]:<9} {t['requests']:>5} {t['distinct']:>4} "
              f"{_s(t['first_trained_s']):>6} {_s(t['first_shadow_s']):>6} "
              f"{_s(t['first_canary_s']):>6} "
              f"{_s(t['memory_canary_s']) + '/' + _s(t['memory_primary_s']):>9} "
              f"{_s(t['first_student_answer_s']):>6} "
              f"{t['invalid_to_client']:>4}  {_shares(t['student_share_per_minute'])}")
    print("\nper workload type")
    head = (f"{'type':<13} {'reqs':>5} {'dist':>4} {'errors':>6} {'student':>7} {'memory':>6} "
            f"{'repeat':>6} {'invalid t/s':>11} {'gold t/s':>11} {'no task':>7}  "
            "student % per minute")
    print(head)
    print("-" * len(head))
    for kind, k in summary["types"].items():
        inv, gold = k["invalid_to_client"], k["gold_match"]
        g = "/".join("-" if gold[b] is None else f"{gold[b]:.2f}" for b in ("teacher", "student"))
        print(f"{kind:<13} {k['requests']:>5} {k['distinct']:>4} {k['errors']:>6} "
              f"{k['student_answers']:>7} {k['memory_answers']:>6} "
              f"{_pct(k['repeat_share']):>6} "
              f"{inv['teacher']:>5}/{inv['student']:<5} {g:>11} {k['untasked_requests']:>7}  "
              f"{_shares(k['student_share_per_minute'])}")
