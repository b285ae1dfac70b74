"""The shadow-eval report as plain JSON-able data, built from the store with SQL aggregates.

`build_report` reads each table once (bodies only for the few worst disagreements, see
`gateway.report.worst`) and returns dicts and lists with the stable field names documented
in docs/reports.md. The terminal, HTML and JSON outputs all render this one structure.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.report.judge_cost import judge_usage, no_judge_calls
from gateway.report.timeline import change_row, share_percent, timeline
from gateway.report.worst import TEXT_LIMIT, answer_for_people, worst_disagreements
from gateway.store.catalog import StudentRecord, TaskRecord, list_students, list_tasks
from gateway.store.db import connect, count_if, dialect, is_postgres_url
from gateway.store.stages import StageChange, stage_changes
from policies.stats import percentile, wilson
from policies.student_kinds import DEFAULT_KIND

__all__ = ["REPORT_SCHEMA", "TEXT_LIMIT", "Agreement", "build_report", "dumps", "heldout_block",
           "latency_block", "answer_for_people", "share_percent", "timeline", "verdict",
           "worst_disagreements"]

REPORT_SCHEMA = "slimgate.report/1"

_BUCKETS = {  # the time bucket of a row, 0 .. buckets-1 (SQLite's CAST truncates; PG rounds)
    "sqlite": "MIN(MAX(CAST((created_at - ?) / ? AS INTEGER), 0), ?)",
    "postgres": "LEAST(GREATEST(CAST(FLOOR((created_at - ?) / ?) AS INTEGER), 0), ?)",
}
# One pass over `exchanges` copies the few columns the report needs into a temp table: the
# columns after `request`/`response` sit behind the bodies' overflow pages, so every scan of
# `exchanges` itself reads every body (about 115 ms per 100k rows of 4 KB, warm cache).
_ROWS = """
CREATE TEMP TABLE report_rows AS
SELECT task, {bucket} AS b, backend, fallback, status, latency_ms, cost_usd, api,
       COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0) AS tokens,
       CASE WHEN source IS NULL THEN 0 ELSE 1 END AS imported
FROM exchanges WHERE created_at >= ?
"""
_STUDENT_SERVED = count_if("backend = 'student'")
_BY_TASK = f"""
SELECT task, COUNT(*) AS requests,
       {count_if("backend = 'student'")} AS student_served,
       {count_if("fallback IS NOT NULL")} AS fallbacks,
       {count_if("backend = 'student' OR fallback IS NOT NULL")} AS attempts,
       {count_if("status >= 400")} AS errors,
       {count_if("api = 'responses'")} AS responses_api,
       SUM(CASE WHEN backend = 'teacher' THEN cost_usd END) AS teacher_cost,
       COUNT(CASE WHEN backend = 'teacher' THEN cost_usd END) AS teacher_priced,
       SUM(CASE WHEN backend = 'teacher' THEN tokens ELSE 0 END) AS t_tokens,
       SUM(CASE WHEN backend = 'student' THEN tokens ELSE 0 END) AS s_tokens
FROM report_rows GROUP BY task
"""

Key = tuple[str, int | None]  # (task, student version)
Quantiles = tuple[float, float]  # p50, p95


@dataclass(frozen=True, slots=True)
class Agreement:
    """Counts of compared answers: how many, how many agreed, how many were valid."""

    n: int = 0
    agree: int = 0
    valid: int = 0

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(self.n + other.n, self.agree + other.agree, self.valid + other.valid)


@dataclass(frozen=True, slots=True)
class _Window:
    start: float
    end: float
    buckets: int

    @property
    def width(self) -> float:
        return max(self.end - self.start, 1.0) / self.buckets

    @property
    def args(self) -> tuple[float, float, int]:  # the parameters of _BUCKET
        return (self.start, self.width, self.buckets - 1)


def build_report(
    store: Any,
    *,
    min_agreement: float = 0.9,
    confidence: float = 0.95,
    canary_steps: Sequence[int] = (5, 25, 50),
    since: float | None = None,
    worst: int = 10,
    buckets: int = 40,
    policy: Any | None = None,
    now: float | None = None,
    imported: bool = False,
) -> dict[str, Any]:
    """The whole report for `store`: a `StoreConfig`, a SQLite path or a PostgreSQL URL.

    `since` (unix seconds) limits live data (exchanges, comparisons, audit log) to a window
    ending `now`; held-out evaluations describe a student and are never windowed. `policy`,
    a `PolicyConfig`, overrides the gate numbers per task through its `for_task`.
    History brought in by `slimgate traces import` is counted as traffic only with
    `imported`; `totals.imported_exchanges` says how much there is either way.
    """
    started = time.perf_counter()
    target = store if isinstance(store, str) else store.target
    if not is_postgres_url(target) and target != ":memory:" and not Path(target).exists():
        raise FileNotFoundError(f"store '{target}' does not exist")
    if buckets < 1 or worst < 0:
        raise ValueError(f"need buckets >= 1 and worst >= 0, got {buckets} and {worst}")
    con = connect(store)
    try:
        con.execute("BEGIN")  # one snapshot for every query; writers are never blocked (WAL)
        end = time.time() if now is None else now
        win = _Window(since if since is not None else _first_time(con, end), end, buckets)
        data = _load(con, win, imported)
        rows = []
        for t in list_tasks(con):
            gate = _gate(t, policy, min_agreement, confidence, canary_steps)
            rows.append(_task_row(con, t, gate, data, win, worst))
    finally:
        con.close()
    steps = {r["id"]: r["gate"]["canary_steps"] for r in rows}
    return {
        "schema": REPORT_SCHEMA,
        "generated_at": end,
        "build_ms": round((time.perf_counter() - started) * 1000, 2),
        "window": {"since": since, "start": win.start, "end": end, "buckets": buckets,
                   "bucket_seconds": win.width, "series": "cumulative per student version"},
        "settings": {"min_agreement": min_agreement, "confidence": confidence,
                     "canary_steps": list(canary_steps), "worst": worst,
                     "imported_counted": imported},
        "totals": _totals(data.exchanges, rows) | {"imported_exchanges": data.imported},
        "tasks": rows,
        "audit_log": [change_row(c, steps.get(c.task, canary_steps))
                      for c in data.changes if c.at >= win.start],
    }


def _task_row(
    con: Any, t: TaskRecord, gate: dict[str, Any], data: _Loaded, win: _Window, worst: int
) -> dict[str, Any]:
    version = t.student_version if t.student_version is not None else data.newest.get(t.id)
    key: Key = (t.id, version)
    student = data.students.get(key)
    x = data.exchanges.get(t.id, {})
    mean_cost = x["teacher_cost"] / x["teacher_priced"] if x.get("teacher_priced") else None
    served, requests = int(x.get("student_served") or 0), int(x.get("requests") or 0)
    attempts, fallbacks = int(x.get("attempts") or 0), int(x.get("fallbacks") or 0)
    live = _interval(data.totals.get(key, Agreement()), gate["confidence"])
    live.update({"shadow_n": data.modes.get((*key, "shadow"), 0),
                 "audit_n": data.modes.get((*key, "audit"), 0)})
    row: dict[str, Any] = {
        "id": t.id, "label": t.label, "kind": t.kind, "stage": t.stage, "step": t.step,
        "stage_since": t.stage_since, "pin": t.pin,
        "share_percent": share_percent(t.stage, t.step, gate["canary_steps"], t.pin),
        "student_version": version,
        "student": None if student is None else {
            "version": student.version, "base_model": student.base_model,
            "status": student.status, "created_at": student.created_at,
            "error": student.metrics.get("error"),
            "kind": student.metrics.get("student_kind", DEFAULT_KIND),
            "copy_coverage": student.metrics.get("copy_coverage"),
        },
        "gate": gate,
        "heldout": heldout_block(data.evals.get(key), student, gate["confidence"]),
        "live": live,
        "comparisons": data.count_by_task.get(t.id, 0),
        "fallbacks": {
            "count": fallbacks, "attempts": attempts,
            "rate": fallbacks / attempts if attempts else None,
            "by_reason": data.reasons.get(t.id, {}),
        },
        "traffic": {
            "requests": requests, "student_served": served, "teacher_served": requests - served,
            "student_share": served / requests if requests else None,
            "errors": int(x.get("errors") or 0),
            "responses_api": int(x.get("responses_api") or 0),
        },
        "latency": latency_block(data.served_ms.get(t.id, {}), data.shadow_ms.get(key)),
        "tokens": {"teacher": int(x.get("t_tokens") or 0), "student": int(x.get("s_tokens") or 0)},
        "cost": {
            "teacher_usd": x.get("teacher_cost") or 0.0, "mean_teacher_usd": mean_cost,
            "saved_usd": served * mean_cost if mean_cost is not None else (
                0.0 if served == 0 else None),
            "judge": data.judge.get(t.id, no_judge_calls()),
        },
        "series": _series(win, data.series.get(t.id, {}), data.agreement.get(t.id, {}),
                          mean_cost, gate["confidence"]),
        "timeline": timeline(t, [c for c in data.changes if c.task == t.id], win.start, win.end,
                             gate["canary_steps"]),
        "worst": worst_disagreements(con, t.id, version, win.start, worst),
    }
    row["gate_status"], row["verdict"] = verdict(row)
    return row


# ---- reading the store -----------------------------------------------------------------


@dataclass
class _Loaded:
    """Everything the report needs, read with one aggregate query per table."""

    students: dict[Key, StudentRecord]
    newest: dict[str, int]  # newest student version per task
    exchanges: dict[str | None, dict[str, Any]]  # _BY_TASK rows by task
    reasons: dict[str, dict[str, int]]  # fallback counts by task and reason
    served_ms: dict[str, dict[str, Quantiles]]  # by task and backend
    series: dict[str, dict[int, tuple[int, int]]]  # (requests, student_served) by task, bucket
    evals: dict[Key, Agreement]
    changes: list[StageChange]
    totals: dict[Key, Agreement] = field(default_factory=dict)  # live comparisons
    modes: dict[tuple[str, int | None, str], int] = field(default_factory=dict)
    count_by_task: dict[str, int] = field(default_factory=dict)
    agreement: dict[str, dict[int, dict[int, Agreement]]] = field(default_factory=dict)
    shadow_ms: dict[Key, Quantiles] = field(default_factory=dict)
    imported: int = 0  # exchanges from `slimgate traces import` in the window
    judge: dict[str, dict[str, Any]] = field(default_factory=dict)  # judge calls by task


def _load(con: Any, win: _Window, imported: bool) -> _Loaded:
    con.execute(_ROWS.format(bucket=_BUCKETS[dialect(con)]), (*win.args, win.start))
    n_imported = int(con.execute("SELECT COUNT(*) FROM report_rows WHERE imported = 1"
                                 ).fetchone()[0])
    if not imported and n_imported:
        con.execute("DELETE FROM report_rows WHERE imported = 1")
    judge = judge_usage(con)  # judge calls are counted apart, never as the task's traffic
    students: dict[Key, StudentRecord] = {(s.task, s.version): s for s in list_students(con)}
    reasons: dict[str, dict[str, int]] = defaultdict(dict)
    for task, reason, n in con.execute(
        "SELECT task, fallback, COUNT(*) FROM report_rows WHERE fallback IS NOT NULL "
        "GROUP BY task, fallback ORDER BY COUNT(*) DESC"
    ):
        reasons[task][reason] = int(n)
    served_ms: dict[str, dict[str, Quantiles]] = defaultdict(dict)
    for (task, backend), q in _quantiles(con.execute(
        "SELECT task, backend, latency_ms FROM report_rows "  # answers served as they were
        "WHERE latency_ms IS NOT NULL AND fallback IS NULL AND status < 400"
    )).items():
        served_ms[task][backend] = q
    series: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for task, b, n, served in con.execute(
        f"SELECT task, b, COUNT(*), {_STUDENT_SERVED} FROM report_rows GROUP BY task, b"
    ):
        series[task][b] = (int(n), int(served))
    data = _Loaded(
        students=students,
        newest={task: version for task, version in students if version is not None},
        exchanges={r["task"]: dict(r) for r in con.execute(_BY_TASK)},
        reasons=reasons, served_ms=served_ms, series=series,
        evals={(task, version): Agreement(n, agree, valid) for task, version, n, agree, valid
               in con.execute("SELECT task, version, COUNT(*), SUM(agree), SUM(valid) "
                              "FROM evaluations GROUP BY task, version")},
        changes=sorted(stage_changes(con, limit=1_000_000), key=lambda c: (c.at, c.seq)),
        judge=judge,
    )
    data.imported = n_imported
    _load_comparisons(con, win, data)
    return data


def _load_comparisons(con: Any, win: _Window, data: _Loaded) -> None:
    totals: dict[Key, Agreement] = defaultdict(Agreement)
    modes: dict[tuple[str, int | None, str], int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    agreement: dict[str, dict[int, dict[int, Agreement]]] = defaultdict(lambda: defaultdict(dict))
    for task, version, mode, b, n, agree, valid in con.execute(
        f"SELECT task, version, mode, {_BUCKETS[dialect(con)]} AS b, COUNT(*), SUM(agree), "
        "SUM(valid) "
        "FROM comparisons WHERE created_at >= ? GROUP BY task, version, mode, b",
        (*win.args, win.start),
    ):
        a = Agreement(n, agree, valid)
        totals[(task, version)] += a
        modes[(task, version, mode)] += n
        count[task] += n
        cell = agreement[task][b]
        cell[version] = cell.get(version, Agreement()) + a
    data.totals, data.modes, data.count_by_task, data.agreement = totals, modes, count, agreement
    data.shadow_ms = _quantiles(con.execute(  # type: ignore[assignment]
        "SELECT task, version, student_ms FROM comparisons "
        "WHERE created_at >= ? AND student_ms IS NOT NULL", (win.start,),
    ))


def _first_time(con: Any, end: float) -> float:
    first = con.execute(
        "SELECT MIN(t) FROM (SELECT MIN(created_at) AS t FROM exchanges "
        "UNION ALL SELECT MIN(created_at) FROM comparisons) AS firsts"
    ).fetchone()[0]
    return float(first) if first is not None and first < end else end - 3600.0


def _quantiles(rows: Iterable[tuple[Any, Any, float]]) -> dict[tuple[Any, Any], Quantiles]:
    """p50 and p95 of the values of (key1, key2, value) rows, per key pair."""
    groups: dict[tuple[Any, Any], list[float]] = defaultdict(list)
    for k1, k2, v in rows:
        groups[(k1, k2)].append(v)
    return {key: (percentile(values, 50) or 0.0, percentile(values, 95) or 0.0)
            for key, values in groups.items()}


# ---- shaping -------------------------------------------------------------------------


def _gate(
    t: TaskRecord, policy: Any | None, min_agreement: float, confidence: float,
    canary_steps: Sequence[int],
) -> dict[str, Any]:
    if policy is not None:
        p = policy.for_task(t.id, t.label)
        min_agreement, confidence, canary_steps = p.min_agreement, p.confidence, p.canary_steps
    return {"min_agreement": min_agreement, "confidence": confidence,
            "canary_steps": list(canary_steps)}


def _interval(a: Agreement, confidence: float) -> dict[str, Any]:
    low, high = wilson(a.agree, a.n, confidence) if a.n else (None, None)
    return {
        "n": a.n, "agree": a.agree, "agreement": a.agree / a.n if a.n else None,
        "lower": low, "upper": high, "valid_rate": a.valid / a.n if a.n else None,
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def heldout_block(
    a: Agreement | None, student: StudentRecord | None, confidence: float
) -> dict[str, Any]:
    """Held-out agreement of a student: from its evaluation rows at the report's confidence,
    else from what the distill worker wrote in `students.metrics` (missing keys: None)."""
    metrics: dict[str, Any] = student.metrics if student is not None else {}
    if a is not None and a.n:
        out = _interval(a, confidence) | {"source": "evaluations"}
    elif metrics:
        n, agree = metrics.get("n"), metrics.get("agree")
        out = {"n": n if isinstance(n, int) else None,
               "agree": agree if isinstance(agree, int) else None, "source": "metrics"}
        out |= {k: _number(metrics.get(k)) for k in ("agreement", "lower", "upper", "valid_rate")}
    else:
        out = _interval(Agreement(), confidence) | {"source": None}
    out["student_p50_ms"] = _number(metrics.get("student_p50_ms"))
    out["judge"] = metrics.get("judge") if isinstance(metrics.get("judge"), dict) else None
    return out


def latency_block(served: dict[str, Quantiles], shadow: Quantiles | None) -> dict[str, Any]:
    """p50/p95 of answers served as-is; a student that serves nothing yet is measured on its
    shadow runs (`student_source` says which)."""
    t50, t95 = served.get("teacher", (None, None))
    s50, s95 = served.get("student") or shadow or (None, None)
    source = "served" if "student" in served else ("shadow" if shadow else None)
    return {"teacher_p50_ms": t50, "teacher_p95_ms": t95, "student_p50_ms": s50,
            "student_p95_ms": s95, "student_source": source}


def _series(
    win: _Window, exchanges: dict[int, tuple[int, int]], agreement: dict[int, dict[int, Agreement]],
    mean_cost: float | None, confidence: float,
) -> list[dict[str, Any]]:
    """Per bucket: traffic share, live agreement (cumulative since the compared version's
    first comparison in the window, with its Wilson band; it restarts when a newer version
    appears) and cumulative cost saved."""
    out = []
    version: int | None = None
    cum = Agreement()
    served_total = 0
    for b in range(win.buckets):
        n, served = exchanges.get(b, (0, 0))
        cell = agreement.get(b, {})
        if cell and (version is None or max(cell) > version):
            version, cum = max(cell), Agreement()
        here = cell.get(version, Agreement()) if version is not None else Agreement()
        cum += here
        served_total += served
        band = _interval(cum, confidence)
        out.append({
            "t": win.start + b * win.width, "t_end": win.start + (b + 1) * win.width,
            "requests": n, "student_served": served, "student_share": served / n if n else None,
            "version": version, "n": here.n, "agree": here.agree, "cum_n": cum.n,
            "cum_agree": cum.agree, "agreement": band["agreement"], "lower": band["lower"],
            "upper": band["upper"],
            "cost_saved_usd": served_total * mean_cost if mean_cost is not None else None,
        })
    return out


def verdict(row: dict[str, Any]) -> tuple[str, str]:
    """Where a task stands against the gate: a stable code and one sentence for people."""
    gate, live, student = row["gate"], row["live"], row["student"]
    line = f"{gate['min_agreement']:.2f}"
    if row["pin"]:
        return "pinned", f"pinned to the {row['pin']} by an operator"
    if student is None:
        return "no_student", "no student trained yet: the teacher serves everything"
    name = f"student v{student['version']}"
    if student["status"] == "failed":
        low = row["heldout"]["lower"]
        return "heldout_failed", f"{name} failed its held-out gate" + (
            f" (lower bound {low:.2f})" if low is not None else "")
    if student["status"] == "near":
        up = row["heldout"]["upper"]
        where = ("proving itself in shadow: held-out and live agreement together must pass"
                 if row["stage"] != "observe" else "waiting for the gate to take it into shadow")
        return "near_miss", f"{name} nearly passed its held-out gate" + (
            f" (upper bound {up:.2f} >= {line})" if up is not None else "") + f"; {where}"
    if student["status"] == "error":
        return "training_failed", f"training {name} failed: {student.get('error') or 'see the log'}"
    if student["status"] == "rolled_back" and row["stage"] == "observe":
        return "rolled_back", f"{name} was rolled back: the teacher serves everything"
    if not live["n"]:
        return "waiting", f"{name}: waiting for live comparisons"
    if live["upper"] < gate["min_agreement"]:
        return "failing", (f"held back: even the upper bound of live agreement, "
                           f"{live['upper']:.2f}, is below the gate {line} (n={live['n']})")
    if live["lower"] < gate["min_agreement"]:
        return "below_gate", (f"held back: live agreement lower bound {live['lower']:.2f} is "
                              f"below the gate {line} (n={live['n']}); more comparisons decide")
    return "passing", f"{name} clears the gate: live lower bound {live['lower']:.2f} >= {line}"


def _totals(per_task: dict[str | None, dict[str, Any]], rows: list[dict[str, Any]]) -> dict[
        str, Any]:
    def total(name: str) -> int:
        return sum(int(x[name] or 0) for x in per_task.values())

    requests, served = total("requests"), total("student_served")
    teacher_cost = sum(x["teacher_cost"] or 0.0 for x in per_task.values())
    saved = sum(r["cost"]["saved_usd"] or 0.0 for r in rows)
    known = {r["id"] for r in rows}
    stages: dict[str, int] = defaultdict(int)
    for r in rows:
        stages[r["stage"]] += 1
    return {
        "requests": requests, "student_served": served, "teacher_served": requests - served,
        "student_share": served / requests if requests else None,
        "responses_api": total("responses_api"),
        "fallbacks": total("fallbacks"),
        "comparisons": sum(r["comparisons"] for r in rows),
        "unassigned_requests": sum(
            int(x["requests"]) for k, x in per_task.items() if k is None or k not in known),
        "tokens_teacher": total("t_tokens"), "tokens_student": total("s_tokens"),
        "cost_usd_teacher": teacher_cost, "cost_saved_usd": saved,
        "cost_usd_judge": sum(r["cost"]["judge"]["usd"] for r in rows),
        "judge_calls": sum(r["cost"]["judge"]["calls"] for r in rows),
        "cost_usd_without_students": teacher_cost + saved,
        "tasks": len(rows), "tasks_by_stage": dict(stages),
    }


def dumps(report: dict[str, Any]) -> bytes:
    """The report as JSON bytes (indented, keys in build order)."""
    return orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
