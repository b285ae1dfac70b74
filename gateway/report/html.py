"""The report as one self-contained HTML page: inline CSS, inline SVG charts drawn here.

No CDN, no external script: the file opens offline and can be mailed around. Every chart is
an `<svg class="chart chart-<name>" id="<name>-<task>">`; every text from the store is
HTML-escaped. Used by `slimgate report --html FILE` and the live `/dashboard`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from gateway.report.terminal import fmt_ci, fmt_ms, fmt_pct, fmt_stage, fmt_usd
from policies.stages import CLIENT_STAGES

W, H = 560, 200  # chart size in px
WIDE = 1180  # width of the stage timeline, which spans the task's card
ML, MR, MT, MB = 46, 14, 14, 26  # margins: left, right, top, bottom
STAGE_COLOURS = {"observe": "#94a3b8", "shadow": "#8b5cf6", "canary": "#f59e0b",
                 "primary": "#10b981"}

CSS = """
:root{--ink:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;
--teacher:#64748b;--student:#0d9488;--agree:#2563eb;--band:#bfdbfe;--gate:#dc2626}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{padding:20px 32px;background:#0f172a;color:#f8fafc}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cbd5e1}main{padding:20px 32px;max-width:1320px}
h2{font-size:18px;margin:28px 0 10px}h3{font-size:15px;margin:18px 0 8px}
.kpis{display:flex;flex-wrap:wrap;gap:12px}.kpi{background:var(--card);border:1px solid
var(--line);border-radius:10px;padding:10px 16px;min-width:150px}.kpi b{display:block;
font-size:20px}.kpi span{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line)}
th,td{padding:6px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f1f5f9;font-size:12px;color:#334155;font-weight:600}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}
section.task{background:var(--card);border:1px solid var(--line);border-radius:12px;
padding:16px 20px;margin:20px 0}section.task h2{margin:0 0 4px}
.meta{color:var(--muted);font-size:13px}.rename{margin:6px 0;font-size:13px}
.rename input{width:24em;font:inherit}.verdict{margin:8px 0;padding:8px 12px;
border-radius:8px;background:#f1f5f9}.verdict.held{background:#fef2f2;color:#991b1b}
.verdict.ok{background:#ecfdf5;color:#065f46}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;color:#fff;font-size:12px;
font-weight:600;vertical-align:middle}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}
figure{margin:0;border:1px solid var(--line);border-radius:8px;padding:8px}figcaption{
font-size:13px;font-weight:600;margin-bottom:4px}figcaption small{font-weight:400;
color:var(--muted)}svg{display:block;max-width:100%;height:auto}
svg text{font-size:11px;fill:#475569}svg .axis line,svg .grid{stroke:var(--line)}
pre{margin:0;white-space:pre-wrap;word-break:break-word;max-height:220px;overflow:auto;
font:12px/1.4 ui-monospace,"DejaVu Sans Mono",monospace}
summary{cursor:pointer;color:#334155;margin-bottom:6px}table.worst td{width:25%}
table.worst td.src{width:10%}.empty{color:var(--muted);font-style:italic}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def task_slug(task_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", task_id).strip("-") or "task"


def _when(ts: float | None, span: float = 0.0) -> str:
    if ts is None:
        return "—"
    fmt = "%H:%M" if 0 < span <= 2 * 86400 else "%Y-%m-%d %H:%M" if span == 0 else "%m-%d"
    return time.strftime(fmt, time.gmtime(ts))


class _Axes:
    """Linear scales from data to the plot area of one chart, with its axes drawn."""

    def __init__(
        self, x0: float, x1: float, y0: float, y1: float, h: int = H, w: int = W
    ) -> None:
        self.x0, self.x1, self.y0, self.y1 = x0, max(x1, x0 + 1e-9), y0, y1
        self.h, self.w = h, w

    def x(self, v: float) -> float:
        return ML + (v - self.x0) / (self.x1 - self.x0) * (self.w - ML - MR)

    def y(self, v: float) -> float:
        v = min(max(v, self.y0), self.y1)  # clipped to the plot area
        return self.h - MB - (v - self.y0) / ((self.y1 - self.y0) or 1.0) * (self.h - MT - MB)

    def draw(self, y_ticks: Sequence[float], y_label: Callable[[float], str]) -> str:
        out = ['<g class="axis">']
        for v in y_ticks:
            y = self.y(v)
            out.append(f'<line class="grid" x1="{ML}" x2="{self.w - MR}" y1="{y:.1f}" '
                       f'y2="{y:.1f}"/>'
                       f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end">{y_label(v)}</text>')
        span = self.x1 - self.x0
        for i in range(5):
            v = self.x0 + span * i / 4
            anchor = "start" if i == 0 else "end" if i == 4 else "middle"
            out.append(f'<text x="{self.x(v):.1f}" y="{self.h - 8}" text-anchor="{anchor}">'
                       f"{_when(v, span)}</text>")
        out.append("</g>")
        return "".join(out)


def _svg(name: str, slug: str, body: str, h: int = H, label: str = "", w: int = W) -> str:
    return (f'<svg class="chart chart-{name}" id="{name}-{slug}" viewBox="0 0 {w} {h}" '
            f'width="{w}" height="{h}" role="img" aria-label="{_e(label)}">{body}</svg>')


def _ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `top` (steps of 1, 2, 2.5 or 5 × 10^k)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _path(points: list[tuple[float, float]]) -> str:
    return "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _no_data(text: str, h: int = H) -> str:
    return f'<text class="no-data" x="{W / 2}" y="{h / 2}" text-anchor="middle">{_e(text)}</text>'


def _markers(ax: _Axes, events: list[dict[str, Any]], h: int = H) -> str:
    out = []
    for ev in events:
        x = ax.x(ev["at"])
        tip = (f"{_when(ev['at'])} {fmt_stage(ev, 'from')} → {fmt_stage(ev, 'to')} "
               f"({ev['actor']}): {ev['reason']}")
        out.append(f'<line class="stage-change" x1="{x:.1f}" x2="{x:.1f}" y1="{MT}" '
                   f'y2="{h - MB}" stroke="{STAGE_COLOURS.get(ev["to_stage"], "#475569")}" '
                   f'stroke-width="1.5" stroke-dasharray="2 3"><title>{_e(tip)}</title></line>')
    return "".join(out)


def agreement_chart(task: dict[str, Any], window: dict[str, Any]) -> str:
    """Cumulative live agreement with its Wilson band, the gate line and stage changes."""
    slug, gate = task_slug(task["id"]), task["gate"]["min_agreement"]
    pts = [b for b in task["series"] if b["agreement"] is not None]
    settled = [b for b in pts if b["cum_n"] >= 10] or pts  # a first handful spans 0..1
    low = min([gate, *(b["lower"] for b in settled)])
    step = 0.1 if low >= 0.55 else 0.2
    y0 = min(0.5, max(0.0, math.floor((low - 0.05) / step) * step))
    ax = _Axes(window["start"], window["end"], y0, 1.0)
    ticks = [y0 + step * i for i in range(round((1 - y0) / step) + 1)]
    body = [ax.draw(ticks, lambda v: f"{v:.1f}")]
    runs: list[list[dict[str, Any]]] = []
    for b in pts:  # one band and line per student version
        if not runs or runs[-1][-1]["version"] != b["version"]:
            runs.append([])
        runs[-1].append(b)
    for run in runs:
        mid = [(ax.x((b["t"] + b["t_end"]) / 2), b) for b in run]
        upper = [(x, ax.y(b["upper"])) for x, b in mid]
        lower = [(x, ax.y(b["lower"])) for x, b in reversed(mid)]
        body.append(f'<path class="band" d="{_path(upper + lower)}Z" fill="var(--band)" '
                    f'fill-opacity="0.7" stroke="none"/>')
        line = _path([(x, ax.y(b["agreement"])) for x, b in mid])
        body.append(f'<path class="agreement" d="{line}" fill="none" stroke="var(--agree)" '
                    'stroke-width="2"/>')
        for x, b in mid:
            tip = (f"v{b['version']} {_when(b['t_end'])}: {b['agreement']:.3f} "
                   f"[{b['lower']:.3f}, {b['upper']:.3f}] n={b['cum_n']}")
            body.append(f'<circle class="point" cx="{x:.1f}" cy="{ax.y(b["agreement"]):.1f}" '
                        f'r="2.2" fill="var(--agree)"><title>{_e(tip)}</title></circle>')
    gy = ax.y(gate)
    body.append(f'<line class="gate" x1="{ML}" x2="{W - MR}" y1="{gy:.1f}" y2="{gy:.1f}" '
                f'stroke="var(--gate)" stroke-width="1.5" stroke-dasharray="6 4"/>'
                f'<text class="gate-label" x="{W - MR - 4}" y="{gy - 5:.1f}" text-anchor="end" '
                f'style="fill:var(--gate)">gate {gate:.2f}</text>')
    body.append(_markers(ax, task["timeline"]["events"]))
    if not pts:
        body.append(_no_data("no live comparisons in this window"))
    return _svg("agreement", slug, "".join(body), label="agreement over time")


def timeline_chart(task: dict[str, Any], window: dict[str, Any]) -> str:
    """Stage segments coloured by stage, labelled with the share the student serves."""
    h = 74
    ax = _Axes(window["start"], window["end"], 0, 1, h=h, w=WIDE)
    body = [ax.draw([], str)]
    for seg in task["timeline"]["segments"]:
        x0, x1 = ax.x(seg["start"]), ax.x(seg["end"])
        name = seg["stage"] + (f" {seg['share_percent']}%" if seg["stage"] == "canary" else "")
        tip = f"{name} from {_when(seg['start'])} to {_when(seg['end'])}"
        body.append(f'<rect class="segment stage-{_e(seg["stage"])}" x="{x0:.1f}" y="{MT}" '
                    f'width="{max(x1 - x0, 1):.1f}" height="{h - MT - MB - 4}" rx="3" '
                    f'fill="{STAGE_COLOURS.get(seg["stage"], "#cbd5e1")}">'
                    f"<title>{_e(tip)}</title></rect>")
        if x1 - x0 > 7 * len(name):
            body.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{MT + 21}" text-anchor="middle" '
                        f'style="fill:#fff;font-weight:600">{_e(name)}</text>')
    return _svg("timeline", task_slug(task["id"]), "".join(body), h=h, label="stage timeline",
                w=WIDE)


def share_chart(task: dict[str, Any], window: dict[str, Any]) -> str:
    """Per bucket, the share served by the student (bottom) and the teacher (top)."""
    ax = _Axes(window["start"], window["end"], 0.0, 1.0)
    body = [ax.draw([0, 0.25, 0.5, 0.75, 1.0], lambda v: f"{v:.0%}")]
    for b in task["series"]:
        if not b["requests"]:
            continue
        x0, x1 = ax.x(b["t"]) + 0.5, ax.x(b["t_end"]) - 0.5
        ys = ax.y(b["student_share"])
        tip = f"{_when(b['t'])}: {b['student_served']} of {b['requests']} by the student"
        body.append(f'<g class="bucket"><title>{_e(tip)}</title>'
                    f'<rect class="teacher" x="{x0:.1f}" y="{ax.y(1):.1f}" width="{x1 - x0:.1f}"'
                    f' height="{ys - ax.y(1):.1f}" fill="var(--teacher)" fill-opacity="0.35"/>'
                    f'<rect class="student" x="{x0:.1f}" y="{ys:.1f}" width="{x1 - x0:.1f}" '
                    f'height="{ax.y(0) - ys:.1f}" fill="var(--student)"/></g>')
    planned = []
    for seg in task["timeline"]["segments"]:
        y = ax.y(seg["share_percent"] / 100)
        planned += [(ax.x(seg["start"]), y), (ax.x(seg["end"]), y)]
    if planned:
        body.append(f'<path class="planned" d="{_path(planned)}" fill="none" stroke="#0f172a" '
                    f'stroke-width="1.2" stroke-dasharray="4 3"><title>share the stage sets'
                    f"</title></path>")
    if not any(b["requests"] for b in task["series"]):
        body.append(_no_data("no requests in this window"))
    return _svg("share", task_slug(task["id"]), "".join(body), label="traffic share")


def latency_chart(task: dict[str, Any]) -> str:
    """p50 and p95 latency, teacher against student, as horizontal bars."""
    lat = task["latency"]
    rows = [(f"{who} p{q}", lat[f"{who}_p{q}_ms"], who)
            for q in (50, 95) for who in ("teacher", "student")]
    top = max([v for _, v, _ in rows if v is not None] or [1.0])
    h, bar = 150, 24
    body = []
    for i, (name, value, who) in enumerate(rows):
        y = MT + i * (bar + 8)
        width = (value or 0) / top * (W - 150 - 90)
        body.append(f'<text x="{140}" y="{y + 16}" text-anchor="end">{name}</text>'
                    f'<rect class="bar {who}" x="150" y="{y}" width="{max(width, 1):.1f}" '
                    f'height="{bar}" rx="3" fill="var(--{who})"/>'
                    f'<text x="{150 + width + 6:.1f}" y="{y + 16}">{fmt_ms(value)}</text>')
    if lat.get("student_source") == "shadow":
        body.append(f'<text x="{W - MR}" y="{h - 4}" text-anchor="end">student measured on '
                    f"shadow runs</text>")
    return _svg("latency", task_slug(task["id"]), "".join(body), h=h, label="latency")


def cost_chart(task: dict[str, Any], window: dict[str, Any]) -> str:
    """Cumulative teacher cost saved by student-served requests."""
    pts = [b for b in task["series"] if b["cost_saved_usd"] is not None]
    ticks = _ticks(max([b["cost_saved_usd"] for b in pts] or [0.0]))
    ax = _Axes(window["start"], window["end"], 0.0, ticks[-1])
    body = [ax.draw(ticks, lambda v: f"${v:,.2f}" if ticks[-1] >= 0.1 else f"${v:.4f}")]
    if pts and pts[-1]["cost_saved_usd"]:
        line = [(ax.x(b["t_end"]), ax.y(b["cost_saved_usd"])) for b in pts]
        area = [(ax.x(pts[0]["t"]), ax.y(0)), *line, (line[-1][0], ax.y(0))]
        body.append(f'<path class="area" d="{_path(area)}Z" fill="var(--student)" '
                    f'fill-opacity="0.15"/><path class="saved" d="{_path(line)}" fill="none" '
                    f'stroke="var(--student)" stroke-width="2"/>')
    else:
        body.append(_no_data("nothing saved yet: the teacher serves everything"))
    return _svg("cost", task_slug(task["id"]), "".join(body), label="cost saved")


def _kpis(items: list[tuple[str, str]]) -> str:
    return '<div class="kpis">' + "".join(
        f'<div class="kpi"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v in items) + "</div>"


def _badge(stage: str, text: str) -> str:
    colour = STAGE_COLOURS.get(stage, "#475569")
    return f'<span class="badge" style="background:{colour}">{_e(text)}</span>'


def _stage_text(task: dict[str, Any]) -> str:
    extra = f" {task['share_percent']}%" if task["stage"] == "canary" else ""
    return task["stage"] + extra + (f" · pinned {task['pin']}" if task["pin"] else "")


def _worst_table(task: dict[str, Any]) -> str:
    if not task["worst"]:
        return '<p class="empty">No disagreements recorded for this student.</p>'
    rows = "".join(
        f'<tr class="disagreement"><td class="src">{_e(w["source"])}'
        f'{" · " + _e(w["mode"]) if w["mode"] else ""}<br>score {w["score"]:.2f}'
        f'{"" if w["valid"] else "<br>invalid"}<br><small>{_e(w["detail"])}</small></td>'
        f'<td><pre>{_e(w["prompt"] or "—")}</pre></td><td><pre class="student">'
        f'{_e(w["student"])}</pre></td><td><pre class="teacher">{_e(w["teacher"])}</pre></td></tr>'
        for w in task["worst"]
    )
    opened = " open" if task["stage"] not in CLIENT_STAGES else ""
    return (f'<details{opened}><summary>{len(task["worst"])} answers, lowest score first'
            '</summary><table class="worst"><thead><tr><th>where</th><th>last user message</th>'
            f"<th>student</th><th>teacher</th></tr></thead><tbody>{rows}</tbody></table>"
            "</details>")


def _rename_form(task: dict[str, Any]) -> str:
    """The live dashboard's rename form (a plain POST; the page runs no script)."""
    return (f'<form class="rename" method="post" action="/dashboard/tasks/'
            f'{_e(quote(task["id"], safe=""))}/rename"><input name="name" maxlength="80" '
            f'required value="{_e(task["label"])}" aria-label="task name">'
            '<button type="submit">Rename</button></form>')


def _task_section(task: dict[str, Any], window: dict[str, Any], rename: bool = False) -> str:
    s = task["student"]
    student = "no student"
    if s:
        cov = s.get("copy_coverage")
        copy = f" · copy slots {cov:.2f}" if cov is not None else ""
        student = (f"v{s['version']} · {s.get('kind', 'generative')} {s['base_model']}{copy}"
                   f" · {s['status']}")
    status = task["gate_status"]
    klass = {"passing": "ok", "below_gate": "held", "failing": "held", "heldout_failed": "held",
             "near_miss": "held", "rolled_back": "held"}.get(status, "")
    fb = task["fallbacks"]
    reasons = ", ".join(f"{k} {v}" for k, v in fb["by_reason"].items())
    kpis = _kpis([
        ("held-out agreement", fmt_ci(task["heldout"])),
        ("live agreement", fmt_ci(task["live"])),
        ("live comparisons", str(task["live"]["n"])),
        ("requests (/v1/responses)", f"{task['traffic']['requests']:,} "
         f"({task['traffic']['responses_api']:,})"),
        ("student share (actual)", fmt_pct(task["traffic"]["student_share"])),
        ("fallbacks", f"{fb['count']} ({fmt_pct(fb['rate'])})" + (f" · {reasons}" if reasons
                                                                  else "")),
        ("cost saved", fmt_usd(task["cost"]["saved_usd"])),
    ])
    figures = [
        ("Agreement over time", "cumulative per student version, Wilson band at "
         f"{task['gate']['confidence']:.0%}; dashed red: gate", agreement_chart(task, window)),
        ("Traffic share", "student (teal) vs teacher (grey); dashed: share the stage sets",
         share_chart(task, window)),
        ("Latency", "p50 and p95, teacher vs student", latency_chart(task)),
        ("Cost saved", "cumulative, at the task's mean teacher cost per request",
         cost_chart(task, window)),
    ]
    charts = "".join(f"<figure><figcaption>{t} <small>{_e(sub)}</small></figcaption>{svg}"
                     "</figure>" for t, sub, svg in figures)
    return (
        f'<section class="task" id="task-{task_slug(task["id"])}"><h2>{_e(task["label"])} '
        f'{_badge(task["stage"], _stage_text(task))}</h2><div class="meta">{_e(task["id"])} · '
        f'{_e(task["kind"])} · {_e(student)}</div>{_rename_form(task) if rename else ""}'
        f'<div class="verdict {klass} {status}">'
        f'{_e(task["verdict"])}</div>{kpis}<h3>Stage timeline</h3>'
        f"{timeline_chart(task, window)}<div class=\"charts\">{charts}</div>"
        f"<h3>Worst disagreements</h3>{_worst_table(task)}</section>"
    )


def _overview(report: dict[str, Any]) -> str:
    head = ("task", "stage", "student", "held-out", "live", "fallbacks", "share", "saved")
    rows = "".join(
        f'<tr><td><a href="#task-{task_slug(t["id"])}">{_e(t["label"])}</a></td>'
        f'<td>{_badge(t["stage"], _stage_text(t))}</td>'
        f'<td>{_e("v" + str(t["student_version"]) if t["student_version"] else "—")}</td>'
        f'<td class="num">{fmt_ci(t["heldout"])}</td><td class="num">{fmt_ci(t["live"])}</td>'
        f'<td class="num">{t["fallbacks"]["count"]}</td>'
        f'<td class="num">{fmt_pct(t["traffic"]["student_share"])}</td>'
        f'<td class="num">{fmt_usd(t["cost"]["saved_usd"])}</td></tr>'
        for t in report["tasks"]
    )
    return (f'<table class="overview"><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}'
            f"</tr></thead><tbody>{rows}</tbody></table>")


def _audit_log(report: dict[str, Any]) -> str:
    if not report["audit_log"]:
        return '<p class="empty">No stage changes in this window.</p>'
    rows = "".join(
        f"<tr><td>{_when(c['at'])}</td><td>{_e(c['task'])}</td>"
        f"<td>{_e(fmt_stage(c, 'from'))} → {_e(fmt_stage(c, 'to'))}</td>"
        f"<td>{_e(c['version'])}</td><td>{_e(c['actor'])}</td><td>{_e(c['reason'])}</td></tr>"
        for c in report["audit_log"]
    )
    return ('<table class="audit-log"><thead><tr><th>at (UTC)</th><th>task</th><th>change</th>'
            f"<th>version</th><th>actor</th><th>reason</th></tr></thead><tbody>{rows}</tbody>"
            "</table>")


def render_html(report: dict[str, Any], *, refresh_seconds: int | None = None,
                rename_forms: bool = False) -> str:
    """The whole report as one HTML document; `refresh_seconds` makes the page reload;
    `rename_forms` (the live dashboard only) gives each task a form to rename it."""
    tot, win = report["totals"], report["window"]
    refresh = (f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">'
               if refresh_seconds else "")
    kpis = _kpis([
        ("requests", f"{tot['requests']:,}"),
        ("through /v1/responses", f"{tot['responses_api']:,}"),
        ("served by students", fmt_pct(tot["student_share"])),
        ("teacher cost", fmt_usd(tot["cost_usd_teacher"])),
        ("cost saved", fmt_usd(tot["cost_saved_usd"])),
        *([("judge calls (free text)", f"{tot['judge_calls']:,} · "
            f"{fmt_usd(tot['cost_usd_judge'])}")] if tot.get("judge_calls") else []),
        ("fallbacks", f"{tot['fallbacks']:,}"),
        ("live comparisons", f"{tot['comparisons']:,}"),
    ])
    tasks = "".join(_task_section(t, win, rename_forms) for t in report["tasks"]) or (
        '<p class="empty">No tasks discovered yet.</p>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"{refresh}<title>slimgate report</title><style>{CSS}</style></head><body>"
        f"<header><h1>slimgate — shadow evaluation</h1><p>{_when(win['start'])} → "
        f"{_when(win['end'])} UTC · generated in {report['build_ms']:.0f} ms · gate: live "
        f"agreement lower bound ≥ {report['settings']['min_agreement']:.2f} at "
        f"{report['settings']['confidence']:.0%} confidence</p></header><main>{kpis}"
        f"<h2>Tasks</h2>{_overview(report)}{tasks}<h2>Audit log</h2>{_audit_log(report)}"
        "</main></body></html>"
    )
