"""`slimgate demo`: the whole loop, offline, on this machine, with nothing faked inside slimgate.

A replay teacher (an OpenAI-compatible server answering from a synthetic agent workload's
reference answers, with realistic latency) stands in for the strong LLM. The real
`slimgate serve` runs with its real worker; an agent sends the workload through it with the
official `openai` SDK. Tasks are discovered, students trained and evaluated, shadowed,
canaried and promoted by the policies; the demo only watches, then prints the summary and
writes the HTML report.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.offline.local import free_port, gateway_toml, wait_ready
from policies.contract import check_contract
from policies.stages import CLIENT_STAGES

DEMO_KEY = "sk-slimgate-demo"  # a local, throwaway gateway key for the demo's own gateway
MODEL = "gpt-4o-mini"


@dataclass
class Plan:
    warmup: int  # requests sent before anything can be learned
    train_budget_s: float  # per task
    deadline_s: float  # the whole demo ends by then
    rate_per_s: float  # live traffic after the warm-up
    latency_ms: float  # teacher latency
    ms_per_token: float


FAST = Plan(warmup=900, train_budget_s=35, deadline_s=420, rate_per_s=6,
            latency_ms=250, ms_per_token=3)
FULL = Plan(warmup=1500, train_budget_s=80, deadline_s=840, rate_per_s=6,
            latency_ms=400, ms_per_token=6)

# The demo runs the default gate (min_agreement 0.9 at 95%, min_heldout, min_live) and the
# default data rule; what it changes paces a minutes-long run, and the summary says so.
PACING = [
    ("distill.training.time_budget_s", "600", "35 (fast) or 80: a demo lasts minutes"),
    ("distill.candidates", "SmolLM2-135M if installed, scratch:tiny, scratch:small",
     "scratch:tiny only"),
    ("worker.interval_s / gate_interval_s", "30 / 5", "5 / 2: passes and gates sooner"),
    ("policy.canary_steps", "[5, 25, 50]", "[10, 50]"),
    ("policy.canary_min_comparisons / canary_min_seconds", "30 / 60", "12 / 10"),
    ("policy.audit_rate / primary_audit_rate", "0.1 / 0.05", "0.5 / 0.2"),
]


@dataclass
class Tally:
    sent: int = 0
    by_backend: dict[str, int] = field(default_factory=dict)
    invalid: int = 0  # structured answers the client got that broke the request's contract
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def write_config(d: Path, teacher_url: str, port: int, plan: Plan) -> Path:
    path = d / "config.toml"
    path.write_text(gateway_toml(port=port, store=d / "slimgate.db", keys_env="SLIMGATE_DEMO_KEYS",
                                 model=MODEL, base_url=teacher_url, model_extra="timeout_s = 30.0",
                                 more=f"""
[distill]
students_dir = "{d / 'students'}"
candidates = [{{ model = "scratch:tiny", params = 2000000, context = 1024 }}]

[distill.training]
time_budget_s = {plan.train_budget_s}
max_steps = 4000
batch_size = 8
max_seq_len = 512

[students]
timeout_s = 10.0
refresh_s = 1.0

[worker]
interval_s = 5.0
gate_interval_s = 2.0

[policy]
canary_steps = [10, 50]
canary_min_comparisons = 12
canary_min_seconds = 10.0
audit_rate = 0.5
primary_audit_rate = 0.2
"""))
    return path


def _send(client: Any, item: Any, tally: Tally) -> None:
    try:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, **item.request)
        resp = raw.parse()
        backend = raw.headers.get("x-slimgate-backend", "?")
        msg = resp.choices[0].message.model_dump(exclude_none=True)
        bad = check_contract(item.request, msg) is not None
    except Exception:
        with tally.lock:
            tally.errors += 1
        return
    with tally.lock:
        tally.sent += 1
        tally.by_backend[backend] = tally.by_backend.get(backend, 0) + 1
        tally.invalid += bad


def _stages(db: Path) -> list[tuple[str, str, str, int, str | None]]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        rows = con.execute("SELECT id, label, stage, step, kind FROM tasks ORDER BY label")
        out = [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
        con.close()
        return out
    except sqlite3.Error:
        return []


DEMO_MARKER = ".slimgate-demo"  # written in every demo directory; only such are replaced


class DemoDirError(ValueError):
    """The demo directory holds something the demo did not make."""


def prepare_demo_dir(directory: str) -> Path:
    """An empty demo directory: a previous demo's (it has the marker) is replaced; any other
    non-empty directory is refused, never deleted."""
    d = Path(directory).resolve()
    if d.is_symlink() or (d.exists() and not d.is_dir()):
        raise DemoDirError(f"'{d}' is not a directory the demo made; choose another --dir")
    if d.is_dir() and any(d.iterdir()):
        if not (d / DEMO_MARKER).is_file():
            raise DemoDirError(f"'{d}' is not empty and was not made by `slimgate demo` (no "
                               f"{DEMO_MARKER}); refusing to delete it. Choose another --dir.")
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    (d / DEMO_MARKER).write_text("made by `slimgate demo`; the next demo run replaces this "
                                 "directory\n")
    return d


def run_demo(*, fast: bool = False, directory: str = "demo-run") -> int:
    from openai import OpenAI

    from gateway.offline.replay_teacher import ReplayTeacher
    from gateway.offline.workload import generate, to_traces

    plan = FAST if fast else FULL
    started = time.time()
    d = prepare_demo_dir(directory)
    items = generate(plan.warmup + int(plan.rate_per_s * plan.deadline_s) + 200, seed=7)
    traces = d / "traces.jsonl"
    with traces.open("wb") as f:
        for line in to_traces(items, model=MODEL):
            f.write(orjson.dumps(line) + b"\n")
    teacher = ReplayTeacher.from_jsonl(traces, latency_ms=plan.latency_ms,
                                       ms_per_token=plan.ms_per_token).start()
    port = free_port()
    config = write_config(d, teacher.base_url, port, plan)
    env = {**os.environ, "SLIMGATE_DEMO_KEYS": DEMO_KEY, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    print(f"slimgate demo: teacher at {teacher.base_url}, gateway at http://127.0.0.1:{port}/v1, "
          f"{len(items)} workload items, files in {d}")
    gateway = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config",
                                str(config)], env=env, stdin=subprocess.DEVNULL)
    tally = Tally()
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", gateway)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=DEMO_KEY, max_retries=0,
                        timeout=60)
        print(f"[{time.time() - started:5.0f}s] warm-up: {plan.warmup} agent requests "
              "through the gateway (the teacher answers all; everything is recorded)")
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda it: _send(client, it, tally), items[:plan.warmup]))
        print(f"[{time.time() - started:5.0f}s] live traffic at ~{plan.rate_per_s:g} req/s while "
              "the worker discovers tasks, trains students and the gate moves them")
        _live(client, items[plan.warmup:], plan, tally, d / "slimgate.db", started)
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()
        teacher.stop()
    return _summary(d, tally, started)


def _live(client: Any, items: list[Any], plan: Plan, tally: Tally, db: Path,
          started: float) -> None:
    deadline = started + plan.deadline_s
    last_status = 0.0
    with ThreadPoolExecutor(8) as pool:
        for item in items:
            now = time.time()
            if now >= deadline:
                break
            pool.submit(_send, client, item, tally)
            if now - last_status >= 20:
                last_status = now
                stages = _stages(db)
                line = ", ".join(f"{label} {stage}" + (f"@{step}" if stage == "canary" else "")
                                 for _, label, stage, step, _ in stages)
                print(f"[{now - started:5.0f}s] {tally.sent} requests, "
                      f"student-served {tally.by_backend.get('student', 0)}; {line}")
                if stages and all(s[2] == "primary" or s[4] == "text" for s in stages) \
                        and any(s[2] == "primary" for s in stages):
                    break
            time.sleep(1 / plan.rate_per_s)


def _summary(d: Path, tally: Tally, started: float) -> int:
    from gateway.config import load_config
    from gateway.report import build_report, policy_numbers, render_html
    from gateway.report.terminal import print_report

    config = load_config(d / "config.toml")
    report = build_report(config.store, **policy_numbers(config))
    print_report(report)
    html = d / "report.html"
    html.write_text(render_html(report), encoding="utf-8")
    promoted = [t for t in report.get("tasks", []) if t.get("stage") in CLIENT_STAGES]
    print(f"\nslimgate demo finished in {time.time() - started:.0f}s: {tally.sent} requests, "
          f"{tally.by_backend.get('student', 0)} answered by students, {tally.errors} errors, "
          f"{tally.invalid} invalid structured answers received by the agent.")
    print(f"tasks on a student: {', '.join(t['label'] for t in promoted) or 'none'}")
    print("settings: the default gate and data rule; paced for a demo (default → demo): "
          + "; ".join(f"{name} {default} → {why}" for name, default, why in PACING))
    print(f"report: {html}   (also: slimgate report --config {d / 'config.toml'})")
    return 0 if tally.invalid == 0 else 1
