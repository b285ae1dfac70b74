"""One leading worker: the lock primitive on both stores, and two `slimgate worker` processes
on one SQLite store where the standby takes over when the leader is killed with -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.store.db import connect
from gateway.store.leader import FileLeaderLock, PgLeaderLock, whoami
from tests.pg import pg_database
from tests.served import ROOT, START_TIMEOUT_S


def test_file_lock_one_holder_at_a_time(tmp_path: Path) -> None:
    a, b = FileLeaderLock(tmp_path / "s.db.leader"), FileLeaderLock(tmp_path / "s.db.leader")
    assert a.try_acquire() and a.held
    assert not b.try_acquire() and not b.held
    assert b.holder() == whoami()  # read from the file the leader wrote
    assert a.check() and not b.check()
    a.release()
    assert b.holder() is None  # nobody leads; the old text is stale
    assert b.try_acquire()
    assert not a.try_acquire()


def test_file_lock_replaced_file_is_a_lost_lead(tmp_path: Path) -> None:
    path = tmp_path / "s.db.leader"
    a = FileLeaderLock(path)
    assert a.try_acquire()
    path.unlink()  # someone removed it: a newcomer could now lock a new file
    b = FileLeaderLock(path)
    assert b.try_acquire()
    assert not a.check() and not a.held  # so the old holder steps down
    assert b.check()


def test_pg_lock_goes_with_its_connection() -> None:
    import psycopg

    with pg_database() as url:
        a, b = PgLeaderLock(url), PgLeaderLock(url)
        try:
            assert a.try_acquire()
            assert not b.try_acquire()
            assert b.holder() == whoami()
            pid = a._con.info.backend_pid
            with psycopg.connect(url, autocommit=True) as admin:  # the leader's session dies
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert not a.check() and not a.held  # the holder notices it lost the lead
            assert b.try_acquire() and b.check()
            assert not a.try_acquire()
        finally:
            a.release()
            b.release()


def write_config(tmp: Path) -> Path:
    cfg = tmp / "config.toml"
    cfg.write_text(f"""
[store]
path = "{tmp / 'store.db'}"

[distill]
students_dir = "{tmp / 'students'}"

[worker]
interval_s = 1.0
gate_interval_s = 1.0
standby_poll_s = 0.5
""")
    return cfg


def start_worker(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--config", str(cfg)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(log: Path, text: str, deadline_s: float) -> bool:
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if log.exists() and text in log.read_text():
            return True
        time.sleep(0.2)
    return False


def leads(proc: subprocess.Popen[bytes]) -> str:
    return f"this worker (pid {proc.pid} on {socket.gethostname()}) leads"


@pytest.mark.slow
def test_standby_worker_takes_over_after_kill_9(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    connect(str(tmp_path / "store.db")).close()  # migrated once, before the workers race
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    procs = [start_worker(cfg, logs[0])]
    try:
        assert wait_for(logs[0], leads(procs[0]), START_TIMEOUT_S), logs[0].read_text()
        procs.append(start_worker(cfg, logs[1]))
        assert wait_for(logs[1], "stands by", START_TIMEOUT_S), logs[1].read_text()
        assert f"pid {procs[0].pid} " in logs[1].read_text()  # it names who leads
        time.sleep(2)  # several polls: the standby must not take the lead while it is held
        assert leads(procs[1]) not in logs[1].read_text()
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        # Stated bound: one standby poll after the OS drops the dead leader's flock (0.5 s
        # here); generous for a loaded machine.
        assert wait_for(logs[1], leads(procs[1]), 30), logs[1].read_text()
        assert procs[1].poll() is None
        shown = subprocess.run([sys.executable, "-m", "gateway.cli", "tasks", "--config",
                                str(cfg)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert f"leading worker: pid {procs[1].pid} on" in shown.stdout, shown.stdout
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
