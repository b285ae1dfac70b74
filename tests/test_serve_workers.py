"""`slimgate serve --workers 2` over a real socket: two processes answer on one port.

Each process alone serves the port while the other is stopped (so both really serve), both
record into the one store, a killed process is replaced, and the distill worker runs once,
beside the supervisor, not once per process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.offline.local import free_port
from tests.served import ROOT, START_TIMEOUT_S, start_upstream_process, write_config

KEY = "sk-workers-test"
ENV = {"SERVED_TEST_KEYS": KEY, "SERVED_TEST_PROVIDER_KEY": "sk-provider"}
STARTED = "Application startup complete"


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue  # it exited while we looked
        if ppid == pid:
            out[int(entry.name)] = cmd
    return out


def gateway_processes(pid: int) -> set[int]:
    return {p for p, cmd in children(pid).items() if "spawn_main" in cmd}


def wait_for(what: str, check: object, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def upstream() -> Iterator[str]:
    proc, url = start_upstream_process()
    yield url
    proc.terminate()
    proc.wait(10)


def chat(port: int, text: str) -> int:
    """One request on a fresh connection (so the kernel hands it to any process)."""
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                   headers={"authorization": f"Bearer {KEY}"},
                   json={"model": "m", "messages": [{"role": "user", "content": text}]})
    return r.status_code


def test_two_processes_share_the_port(tmp_path: Path, upstream: str) -> None:
    port = free_port()
    cfg = write_config(tmp_path, upstream, port, extra="")  # the embedded worker: on
    cfg.write_text(cfg.read_text().replace('log_level = "warning"', 'log_level = "info"'))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        gw = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--workers", "2"],
            cwd=ROOT, env={**os.environ, **ENV}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for("two processes started", lambda: log.read_text().count(STARTED) >= 2)
        procs = gateway_processes(gw.pid)
        assert len(procs) == 2, children(gw.pid)
        workers = [p for p, cmd in children(gw.pid).items() if "gateway.cli worker" in cmd]
        assert len(workers) == 1, children(gw.pid)  # the supervisor's, not one per process

        sent = 0
        for stopped in sorted(procs):
            os.kill(stopped, signal.SIGSTOP)  # it cannot accept: the other one must answer
            try:
                for i in range(5):
                    assert chat(port, f"while {stopped} is stopped, {i}") == 200
                    sent += 1
            finally:
                # (the supervisor replaces a process stopped past its 5 s health check)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(stopped, signal.SIGCONT)

        db = tmp_path / "store.db"

        def recorded() -> int:
            with sqlite3.connect(db) as con:
                return int(con.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0])

        wait_for(f"{sent} exchanges recorded", lambda: recorded() == sent)

        victim = min(procs)
        os.kill(victim, signal.SIGKILL)
        assert chat(port, "after a kill") == 200  # the other process still answers
        wait_for("a replacement process", lambda: len(gateway_processes(gw.pid) - procs) == 1
                 and len(gateway_processes(gw.pid)) == 2)
    finally:
        gw.terminate()
        gw.wait(60)
    assert gw.returncode == 0, log.read_text()[-3000:]
    assert not any(Path(f"/proc/{p}").exists() for p in workers)  # stopped with the gateway
