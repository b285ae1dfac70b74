"""Shadow-eval report: numbers from a synthetic store, JSON field names, terminal and HTML output.

`build_store` writes two tasks straight into a migrated SQLite file: `extract-invoice`
promoted observe → shadow → canary → primary with good agreement, and `triage-ticket` held
back in shadow with disagreements (one student answer carries a `<script>` tag).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from gateway.cli import main
from gateway.report import build_report, dumps, print_report, render_html
from gateway.store.db import connect
from gateway.store.stages import set_stage
from tests.pg import BACKENDS, store_target

NOW = 1_750_000_000.0
T0 = NOW - 10 * 3600
HOUR = 3600.0
SCRIPT = '<script>alert("pwned")</script>'
A, B = "extract-invoice", "triage-ticket"


def _ins(con: Any, table: str, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    con.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()))


def _exchange(i: int, task: str | None, t: float, **kw: Any) -> dict[str, Any]:
    row = {"request_id": f"{task}-{i}", "created_at": t, "endpoint": "chat/completions",
           "model": "gpt-test", "backend": "teacher", "task": task, "stream": 0, "status": 200,
           "latency_ms": 800.0 + (i % 7) * 10, "prompt_tokens": 100, "completion_tokens": 20,
           "cost_usd": 0.002}
    row.update(kw)
    return row


def _msg(text: str) -> str:
    return orjson.dumps({"role": "assistant", "content": text}).decode()


def _comparison(task: str, version: int, mode: str, t: float, rid: str, agree: bool,
                student: str = "ok", score: float | None = None) -> dict[str, Any]:
    return {"created_at": t, "task": task, "version": version, "mode": mode, "request_id": rid,
            "score": (1.0 if agree else 0.3) if score is None else score, "agree": int(agree),
            "valid": 1, "detail": "same answer" if agree else "different label",
            "student": _msg(student), "teacher": _msg("ok"), "student_ms": 110.0,
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
        _ins(con, "tasks", {"id": tid, "label": label, "kind": kind, "info": "{}",
                            "created_at": T0, "updated_at": T0})
    for task, version, status, base in [(A, 1, "passed", "scratch:tiny"),
                                        (B, 1, "rolled_back", "scratch:tiny"),
                                        (B, 2, "passed", "scratch:small")]:
        _ins(con, "students", {"task": task, "version": version, "path": f"{task}/{version}",
                               "base_model": base, "status": status, "created_at": T0,
                               "metrics": json.dumps({"student_p50_ms": 95.0})})
    for i in range(100):  # held-out: A v1 97/100, B v2 45/50
        _ins(con, "evaluations", {"task": A, "version": 1, "request_id": f"{A}-{i}",
                                  "score": 1.0 if i >= 3 else 0.2 * (i + 1), "agree": int(i >= 3),
                                  "valid": 1, "student": _msg("s"), "teacher": _msg("t")})
    for i in range(50):
        _ins(con, "evaluations", {"task": B, "version": 2, "request_id": f"{B}-{i}",
                                  "score": 1.0 if i >= 5 else 0.1, "agree": int(i >= 5),
                                  "valid": 1, "student": _msg("billing"), "teacher": _msg("bug")})
    for i in range(1000):  # A: 1000 requests over 10 h, the student's share rising by stage
        t = T0 + 36 * i + 1
        if (i % 100) >= _share_at(t, T0):
            _ins(con, "exchanges", _exchange(i, A, t))
            continue
        exp["attempts"] += 1
        if _share_at(t, T0) == 100 and i % 40 == 0:  # in primary: every 40th broke its contract
            reason = "invalid_json" if i % 80 == 0 else "timeout"
            exp["fallbacks"][reason] = exp["fallbacks"].get(reason, 0) + 1
            _ins(con, "exchanges", _exchange(i, A, t, student_version=1, fallback=reason))
        else:
            exp["served"] += 1
            _ins(con, "exchanges", _exchange(i, A, t, backend="student", student_version=1,
                                             cost_usd=None, latency_ms=120.0 + (i % 5) * 5))
    for i in range(500):  # B: teacher only, with request bodies for the worst-answers table
        body = {"model": "gpt-test", "messages": [
            {"role": "system", "content": "Label the ticket."},
            {"role": "user", "content": f"Ticket #{i}: the printer is on fire"}]}
        _ins(con, "exchanges", _exchange(i, B, T0 + 72 * i + 5, cost_usd=0.001,
                                         request=json.dumps(body)))
    for i in range(20):
        _ins(con, "exchanges", _exchange(i, None, T0 + 100 * i))
    for i in range(200):  # A shadow 196/200 in hours 1-3, audit 99/100 in hours 3-10
        _ins(con, "comparisons", _comparison(A, 1, "shadow", T0 + HOUR + 36 * i, f"{A}-{i}",
                                             i % 50 != 25))
    for i in range(100):
        _ins(con, "comparisons", _comparison(A, 1, "audit", T0 + 3 * HOUR + 252 * i, f"{A}-{i}",
                                             i != 7))
    for i in range(30):  # B v1 (rolled back) 18/30; B v2 60/80, one answer with a script tag
        _ins(con, "comparisons", _comparison(B, 1, "shadow", T0 + 0.5 * HOUR + 60 * i,
                                             f"{B}-{i}", i < 18))
    for i in range(80):
        student = SCRIPT if i == 77 else "billing"
        _ins(con, "comparisons", _comparison(B, 2, "shadow", T0 + 2 * HOUR + 360 * i,
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


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """The synthetic store on each engine: (SQLite path or PostgreSQL URL, expectations)."""
    with store_target(request.param, tmp_path_factory.mktemp("report")) as target:
        yield target, build_store(target)


@pytest.fixture(scope="module")
def report(store: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return build_report(store[0], now=NOW)


def _task(report: dict[str, Any], task_id: str) -> dict[str, Any]:
    return next(t for t in report["tasks"] if t["id"] == task_id)


def test_promoted_task_numbers(report: dict[str, Any], store: tuple[str, dict[str, Any]]) -> None:
    exp = store[1]
    a = _task(report, A)
    assert (a["stage"], a["share_percent"], a["student_version"]) == ("primary", 100, 1)
    assert a["student"]["base_model"] == "scratch:tiny"
    assert a["heldout"]["n"] == 100 and a["heldout"]["agreement"] == pytest.approx(0.97)
    assert a["heldout"]["lower"] == pytest.approx(0.9155, abs=1e-4)
    assert a["heldout"]["upper"] == pytest.approx(0.9897, abs=1e-4)
    assert a["live"]["n"] == 300 and a["live"]["agree"] == 295
    assert (a["live"]["shadow_n"], a["live"]["audit_n"]) == (200, 100)
    assert a["live"]["lower"] > 0.9 and a["gate_status"] == "passing"
    assert a["traffic"]["requests"] == 1000
    assert a["traffic"]["student_served"] == exp["served"]
    assert a["traffic"]["student_share"] == pytest.approx(exp["served"] / 1000)
    assert a["fallbacks"]["count"] == sum(exp["fallbacks"].values()) > 0
    assert a["fallbacks"]["by_reason"] == exp["fallbacks"]
    assert a["fallbacks"]["rate"] == pytest.approx(a["fallbacks"]["count"] / exp["attempts"])
    assert a["cost"]["mean_teacher_usd"] == pytest.approx(0.002)
    assert a["cost"]["saved_usd"] == pytest.approx(exp["served"] * 0.002)
    assert a["latency"]["teacher_p50_ms"] == pytest.approx(830.0)
    assert a["latency"]["student_p50_ms"] == pytest.approx(130.0)
    assert a["latency"]["student_source"] == "served"
    assert a["tokens"]["student"] == exp["served"] * 120
    stages = [(s["stage"], s["share_percent"]) for s in a["timeline"]["segments"]]
    assert stages == [("observe", 0), ("shadow", 0), ("canary", 5), ("canary", 25),
                      ("canary", 50), ("primary", 100)]
    series = a["series"]
    assert series[-1]["cost_saved_usd"] == pytest.approx(a["cost"]["saved_usd"])
    assert series[0]["student_share"] == 0 and series[-1]["student_share"] > 0.9
    assert series[-1]["cum_n"] == 300 and series[-1]["lower"] == pytest.approx(a["live"]["lower"])


def test_held_back_task_numbers(report: dict[str, Any]) -> None:
    b = _task(report, B)
    assert (b["stage"], b["share_percent"], b["student_version"]) == ("shadow", 0, 2)
    assert b["live"]["n"] == 80 and b["live"]["agreement"] == pytest.approx(0.75)
    assert b["live"]["lower"] == pytest.approx(0.6452, abs=1e-4)
    assert b["live"]["upper"] == pytest.approx(0.8319, abs=1e-4)
    assert b["comparisons"] == 110  # both versions
    assert b["heldout"]["agreement"] == pytest.approx(0.9) and b["heldout"]["n"] == 50
    assert b["heldout"]["student_p50_ms"] == 95.0
    assert b["gate_status"] == "failing" and "0.83" in b["verdict"]  # upper bound < 0.90
    assert b["traffic"]["student_served"] == 0 and b["cost"]["saved_usd"] == 0.0
    assert b["latency"]["student_source"] == "shadow"
    assert b["latency"]["student_p50_ms"] == pytest.approx(110.0)
    assert b["fallbacks"] == {"count": 0, "attempts": 0, "rate": None, "by_reason": {}}
    # agreement restarts when v2 replaces v1: the last point covers v2's 80 comparisons only
    assert b["series"][-1]["version"] == 2 and b["series"][-1]["cum_n"] == 80
    worst = b["worst"]
    assert worst[0]["student"] == SCRIPT and worst[0]["score"] == pytest.approx(0.05)
    assert worst[0]["prompt"] == "Ticket #177: the printer is on fire"
    assert {w["source"] for w in worst} == {"live", "heldout"} and len(worst) <= 20
    assert [s["stage"] for s in b["timeline"]["segments"]] == [
        "observe", "shadow", "observe", "shadow"]


def test_totals_and_audit_log(report: dict[str, Any], store: tuple[str, dict[str, Any]]) -> None:
    tot = report["totals"]
    assert tot["requests"] == 1520 and tot["unassigned_requests"] == 20
    assert tot["student_served"] == store[1]["served"]
    assert tot["comparisons"] == 410
    assert tot["cost_saved_usd"] == pytest.approx(store[1]["served"] * 0.002)
    teacher_rows = 1000 - store[1]["served"]
    assert tot["cost_usd_teacher"] == pytest.approx(teacher_rows * 0.002 + 500 * 0.001 + 20 * 0.002)
    assert tot["tasks_by_stage"] == {"primary": 1, "shadow": 1}
    log = report["audit_log"]
    assert len(log) == 8 and [c["at"] for c in log] == sorted(c["at"] for c in log)
    assert log[-1]["to_stage"] == "primary" and log[-1]["actor"] == "policy"


def test_json_field_names_are_stable(report: dict[str, Any]) -> None:
    data = json.loads(dumps(report))
    assert set(data) == {"schema", "generated_at", "build_ms", "window", "settings", "totals",
                         "tasks", "audit_log"}
    assert {"requests", "student_share", "cost_usd_teacher", "cost_saved_usd", "fallbacks",
            "comparisons"} <= set(data["totals"])
    task = data["tasks"][0]
    assert set(task) == {
        "id", "label", "kind", "stage", "step", "stage_since", "pin", "share_percent",
        "student_version", "student", "gate", "heldout", "live", "comparisons", "fallbacks",
        "traffic", "latency", "tokens", "cost", "series", "timeline", "worst", "verdict",
        "gate_status"}
    assert {"n", "agreement", "lower", "upper", "valid_rate"} <= set(task["heldout"])
    assert {"n", "agreement", "lower", "upper"} <= set(task["live"])
    assert set(task["latency"]) >= {"teacher_p50_ms", "teacher_p95_ms", "student_p50_ms",
                                    "student_p95_ms"}
    assert {"t", "t_end", "agreement", "lower", "upper", "student_share",
            "cost_saved_usd"} <= set(task["series"][0])
    assert data["window"]["series"] == "cumulative per student version"


def test_since_limits_live_data(store: tuple[str, dict[str, Any]]) -> None:
    late = build_report(store[0], since=T0 + 6 * HOUR, now=NOW)
    a = _task(late, A)
    assert a["traffic"]["requests"] == 400  # hours 6-10 of 1 request / 36 s
    assert a["live"]["n"] == 57  # audits at T0+3h + 252 s * i, i >= 43
    assert a["heldout"]["n"] == 100  # held-out is never windowed
    assert [s["stage"] for s in a["timeline"]["segments"]] == ["primary"]
    assert late["audit_log"] == [] or all(c["at"] >= T0 + 6 * HOUR for c in late["audit_log"])


def test_policy_override_moves_the_gate(store: tuple[str, dict[str, Any]]) -> None:
    from policies.settings import PolicyConfig

    policy = PolicyConfig(tasks=[{"match": B, "min_agreement": 0.6}])  # type: ignore[list-item]
    b = _task(build_report(store[0], now=NOW, policy=policy), B)
    assert b["gate"]["min_agreement"] == 0.6 and b["gate_status"] == "passing"
    policy = PolicyConfig(tasks=[{"match": B, "min_agreement": 0.7}])  # type: ignore[list-item]
    b = _task(build_report(store[0], now=NOW, policy=policy), B)
    assert b["gate_status"] == "below_gate" and "0.65" in b["verdict"]


def test_missing_store_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(str(tmp_path / "nope.db"))
    assert not (tmp_path / "nope.db").exists()


def test_terminal_output_has_task_rows_and_audit_log(report: dict[str, Any]) -> None:
    out = io.StringIO()
    print_report(report, Console(file=out, width=220, color_system=None))
    text = out.getvalue()
    assert "extract_invoice" in text and "triage_ticket" in text
    assert "0.97 [0.92, 0.99]" in text  # held-out of extract-invoice
    assert "0.75 [0.65, 0.83]" in text  # live of triage-ticket
    assert "primary" in text and "held back" in text
    assert "Audit log" in text and "last canary step passed" in text
    assert "[dim]" not in text and "[/]" not in text  # styling applied, never printed


def test_html_has_charts_and_escapes_answers(report: dict[str, Any]) -> None:
    page = render_html(report)
    for chart in ("agreement", "timeline", "share", "latency", "cost"):
        assert page.count(f'class="chart chart-{chart}"') == 2
        assert f'id="{chart}-{A}"' in page and f'id="{chart}-{B}"' in page
    assert page.count('class="gate"') == 2 and 'class="band"' in page
    assert SCRIPT not in page and "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count('class="disagreement"') == len(_task(report, A)["worst"]) + len(
        _task(report, B)["worst"])


def test_report_command_writes_html_and_json(store: tuple[str, dict[str, Any]], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    key = "url" if store[0].startswith("postgresql://") else "path"
    cfg.write_text(f'[store]\n{key} = "{store[0]}"\n[[models]]\nname = "m"\nprovider = "openai"\n'
                   'base_url = "http://127.0.0.1:9/v1"\n')
    assert main(["report", "--config", str(cfg), "--json", "--html", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    assert json.loads(capsys.readouterr().out)["totals"]["requests"] == 1520


def test_empty_store_renders(tmp_path: Path) -> None:
    connect(str(tmp_path / "empty.db")).close()
    report = build_report(str(tmp_path / "empty.db"))
    assert report["tasks"] == [] and report["totals"]["student_share"] is None
    assert "No tasks discovered yet" in render_html(report)
