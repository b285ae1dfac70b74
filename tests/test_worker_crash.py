"""A worker killed with -9 in the middle of training never leaves a half-written student, and
the next run cleans up and trains again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from gateway.offline.workload import generate, to_traces
from gateway.store.db import connect
from tests.served import ROOT

pytestmark = pytest.mark.slow


def seed_store(db: Path, n: int = 120) -> None:
    con = connect(str(db))
    rows = []
    for i, trace in enumerate(to_traces(generate(n, seed=5, kinds=["ticket_triage"]))):
        rows.append((f"req-{i}", time.time(), "chat/completions", "gpt-4o-mini", "teacher", 0,
                     orjson.dumps(trace["request"]).decode(),
                     orjson.dumps(trace["response"]).decode(), 200, "stop"))
    con.executemany(
        "INSERT INTO exchanges (request_id, created_at, endpoint, model, backend, stream, "
        "request, response, status, finish_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.close()


def write_config(tmp: Path, max_steps: int) -> Path:
    cfg = tmp / "config.toml"
    cfg.write_text(f"""
[store]
path = "{tmp / 'store.db'}"

[distill]
students_dir = "{tmp / 'students'}"
min_examples = 40
heldout_percent = 20
candidates = [{{ model = "scratch:tiny", params = 2000000, context = 1024 }}]
# One kind, so one student per pass: a kill must interrupt the long generative training
# (the encoder kind writes through the same partial-then-rename path, tested on its own).
student_kinds = ["generative"]

[distill.training]
time_budget_s = 600
max_steps = {max_steps}

[worker]
interval_s = 1.0
gate_interval_s = 1.0
""")
    return cfg


def worker(cfg: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker", "--config", str(cfg),
                             *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_kill_during_training_then_restart(tmp_path: Path) -> None:
    seed_store(tmp_path / "store.db")
    proc = worker(write_config(tmp_path, max_steps=100_000))
    deadline = time.time() + 180
    partials: list[Path] = []
    while time.time() < deadline and not partials:
        partials = list((tmp_path / "students").glob("*/.v*.partial"))
        time.sleep(0.5)
    assert partials, "training never started"
    time.sleep(3)  # well inside training
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    con = connect(str(tmp_path / "store.db"))
    assert con.execute("SELECT COUNT(*) FROM students").fetchone()[0] == 0
    con.close()
    task_dir = partials[0].parent
    assert not any(p.name.startswith("v") for p in task_dir.iterdir())  # nothing registered

    done = worker(write_config(tmp_path, max_steps=20), "--once")
    assert done.wait(300) == 0
    assert not list((tmp_path / "students").glob("*/.v*.partial"))
    con = connect(str(tmp_path / "store.db"))
    [(version, path)] = con.execute("SELECT version, path FROM students").fetchall()
    con.close()
    assert (tmp_path / "students" / path / "slimgate.json").exists()


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_worker_exits_when_the_gateway_is_killed(tmp_path: Path) -> None:
    from gateway.offline.local import free_port
    from tests.served import start_gateway, start_upstream_process
    from tests.served import write_config as write_served

    upstream, url = start_upstream_process()
    port = free_port()
    cfg = write_served(tmp_path, url, port, extra="[worker]\nembedded = true\n")
    gw = start_gateway(cfg, port, tmp_path / "gw.log", {})
    try:
        deadline = time.time() + 30
        kids: list[int] = []
        while time.time() < deadline and not kids:
            kids = children(gw.pid)
            time.sleep(0.2)
        assert kids, "the gateway did not start its worker"
        gw.send_signal(signal.SIGKILL)
        gw.wait(10)
        deadline = time.time() + 15
        while time.time() < deadline and Path(f"/proc/{kids[0]}").exists():
            state = (Path(f"/proc/{kids[0]}/stat").read_text().rsplit(")", 1)[1].split()[0]
                     if Path(f"/proc/{kids[0]}/stat").exists() else "X")
            if state == "Z":  # exited; only its parent (gone) could reap it
                break
            time.sleep(0.2)
        alive = Path(f"/proc/{kids[0]}").exists() and state != "Z"
        assert not alive, "the worker outlived its gateway"
    finally:
        upstream.kill()
        for k in children(gw.pid):
            os.kill(k, signal.SIGKILL)
