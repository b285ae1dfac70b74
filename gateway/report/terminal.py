"""The report as terminal tables (rich): quality per task, traffic and cost per task, audit log.

Also the number formats shared with the HTML page, so both show "0.97 [0.93, 0.99]" alike.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

STAGE_STYLES = {"observe": "dim", "shadow": "magenta", "canary": "yellow", "primary": "green"}


def fmt_ci(block: dict[str, Any]) -> str:
    """Agreement with its confidence interval: `0.97 [0.93, 0.99]`, or `—` without data."""
    if block.get("agreement") is None:
        return "—"
    if block.get("lower") is None or block.get("upper") is None:
        return f"{block['agreement']:.2f}"
    return f"{block['agreement']:.2f} [{block['lower']:.2f}, {block['upper']:.2f}]"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}" if value in (0, 1) else f"{value:.1%}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.0f} ms"


def fmt_usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.2f}" if abs(value) >= 0.1 or value == 0 else f"${value:.4f}"


def fmt_tokens(value: int) -> str:
    return f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value / 1e3:.1f}k" if value >= 1e3 else (
        str(value))


def _stage(task: dict[str, Any]) -> str:
    text = task["stage"] + (f" {task['share_percent']}%" if task["stage"] == "canary" else "")
    if task["pin"]:
        text += f" (pin {task['pin']})"
    return f"[{STAGE_STYLES.get(task['stage'], '')}]{text}[/]"


def _student(task: dict[str, Any]) -> str:
    s = task["student"]
    if s is None:
        return "—"
    cov = s.get("copy_coverage")
    copy = f", copy {cov:.2f}" if cov is not None else ""
    return (escape(f"v{s['version']} {s['base_model']} ({s['status']})") + "\n"
            f"[dim]{escape(str(s.get('kind', 'generative')) + copy)}[/]")


def quality_table(report: dict[str, Any]) -> Table:
    t = Table(title="Tasks: quality against the teacher", title_justify="left")
    for name, justify in [("task", "left"), ("stage", "left"), ("student", "left"),
                          ("held-out", "right"), ("live", "right"), ("compared", "right"),
                          ("gate", "left")]:
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for task in report["tasks"]:
        held = task["heldout"]
        t.add_row(
            f"{escape(task['label'])}\n[dim]{escape(task['id'])}[/]", _stage(task),
            _student(task),
            f"{fmt_ci(held)}\n[dim]n={held['n'] if held['n'] is not None else '?'}[/]",
            f"{fmt_ci(task['live'])}\n[dim]n={task['live']['n']}[/]",
            str(task["comparisons"]), escape(task["verdict"]),
        )
    return t


def traffic_table(report: dict[str, Any]) -> Table:
    t = Table(title="Tasks: traffic, latency and cost", title_justify="left")
    for name in ("task", "requests", "share (target)", "fallbacks", "teacher p50/p95",
                 "student p50/p95", "tokens T/S", "saved"):
        t.add_column(name, justify="left" if name == "task" else "right")
    for task in report["tasks"]:
        fb, lat, tr = task["fallbacks"], task["latency"], task["traffic"]
        reasons = escape(" ".join(f"{k}:{v}" for k, v in fb["by_reason"].items()))
        shadow = " (shadow)" if lat["student_source"] == "shadow" else ""
        t.add_row(
            escape(task["label"]), f"{tr['requests']:,}" + (
                f"\n[dim]{tr['responses_api']:,} responses[/]" if tr["responses_api"] else ""),
            f"{fmt_pct(tr['student_share'])} ({task['share_percent']}%)",
            f"{fb['count']} {fmt_pct(fb['rate'])}" + (f"\n[dim]{reasons}[/]" if reasons else ""),
            f"{fmt_ms(lat['teacher_p50_ms'])} / {fmt_ms(lat['teacher_p95_ms'])}",
            f"{fmt_ms(lat['student_p50_ms'])} / {fmt_ms(lat['student_p95_ms'])}{shadow}",
            f"{fmt_tokens(task['tokens']['teacher'])} / {fmt_tokens(task['tokens']['student'])}",
            fmt_usd(task["cost"]["saved_usd"]),
        )
    return t


def fmt_stage(change: dict[str, Any], side: str) -> str:
    """One side ("from" / "to") of an audit-log change: `shadow`, `canary 25%`."""
    stage = change[f"{side}_stage"]
    return f"{stage} {change[f'{side}_share_percent']}%" if stage == "canary" else stage


def audit_table(report: dict[str, Any]) -> Table:
    t = Table(title="Audit log (stage changes, newest last)", title_justify="left")
    for name in ("at (UTC)", "task", "change", "version", "actor", "reason"):
        t.add_column(name)
    for c in report["audit_log"]:
        t.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c["at"])), escape(c["task"]),
            f"{fmt_stage(c, 'from')} → {fmt_stage(c, 'to')}",
            "—" if c["version"] is None else f"v{c['version']}", escape(c["actor"]),
            escape(c["reason"]),
        )
    return t


def wide_console() -> Console:
    """stdout; when it is not a terminal (a log, a pipe) wide enough that tables stay whole."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=180)


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    """Print the report's tables; `console` defaults to stdout."""
    console = console or wide_console()
    tot, win = report["totals"], report["window"]
    span = (time.strftime("%Y-%m-%d %H:%M", time.gmtime(win["start"])) + " → "
            + time.strftime("%Y-%m-%d %H:%M", time.gmtime(win["end"])))
    console.print(
        f"[bold]slimgate report[/] {span} UTC ({report['build_ms']:.0f} ms)\n"
        f"{tot['requests']:,} requests ({tot['responses_api']:,} through /v1/responses) · "
        f"{fmt_pct(tot['student_share'])} served by students · "
        f"teacher cost {fmt_usd(tot['cost_usd_teacher'])} · saved {fmt_usd(tot['cost_saved_usd'])}"
        f" · {tot['fallbacks']:,} fallbacks · {tot['comparisons']:,} live comparisons"
        + (f" · judge {tot['judge_calls']:,} calls, {fmt_usd(tot['cost_usd_judge'])}"
           if tot.get("judge_calls") else "") + "\n"
        f"gate: live agreement lower bound ≥ {report['settings']['min_agreement']:.2f} at "
        f"{report['settings']['confidence']:.0%} confidence"
    )
    if tot.get("imported_exchanges"):
        counted = report["settings"].get("imported_counted")
        console.print(f"[dim]{tot['imported_exchanges']:,} imported exchanges (slimgate traces "
                      "import) " + ("counted as traffic above[/]" if counted else
                                    "not counted above; --imported counts them[/]"))
    if not report["tasks"]:
        console.print("[dim]No tasks discovered yet.[/]")
    else:
        console.print(quality_table(report))
        console.print(traffic_table(report))
    console.print(audit_table(report))
