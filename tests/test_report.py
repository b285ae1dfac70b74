"""Shadow-eval report: numbers from a synthetic store, JSON field names, terminal and HTML output.

The store (`tests/helpers_report.py`) holds `extract-invoice`, promoted observe → shadow →
canary → primary with good agreement, and `triage-ticket`, held back in shadow with
disagreements (one student answer carries a `<script>` tag).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gateway.cli import main
from gateway.report import build_report, dumps, print_report, render_html
from gateway.store.db import connect
from tests.helpers_report import HOUR, NOW, SCRIPT, T0, A, B, build_store
from tests.pg import BACKENDS, store_target


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
