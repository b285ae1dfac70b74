"""Three gateway replicas and two workers on one PostgreSQL database, driven by the `openai`
SDK over real sockets: the worker's promotion reaches every replica, the standby takes over
from a leader killed with -9 and gates on, and a replica killed with -9 under load loses no
acknowledged exchange (durability "sync": committed before the answer)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import orjson
import psycopg
import pytest
from aiohttp import web

from gateway.fingerprint import fingerprint
from gateway.offline.local import free_port, gateway_toml
from gateway.offline.local import wait_ready as local_wait_ready
from gateway.store.db import connect
from gateway.store.stages import set_pin
from tests.pg import pg_database
from tests.served import ROOT, START_TIMEOUT_S, start_upstream_process

pytestmark = pytest.mark.slow

SYSTEM = "Say which team should handle the ticket."
TASK = "t-triage"
REFRESH_S = 10.0  # students.refresh_s of the replicas: a change missed by NOTIFY is polled
KEY = "sk-replicas-test"


def body(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "system", "content": SYSTEM},
                                       {"role": "user", "content": text}]}


class StudentServer:
    """A stand-in for vLLM serving the student's adapter: it lists the adapter as loaded and
    answers as the teacher does (so audits agree and the gate has no reason to roll back)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls = 0
        self._loop: Any = None

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": f"{TASK}-v1"}]})

    async def _chat(self, request: web.Request) -> web.Response:
        self.calls += 1
        data = orjson.loads(await request.read())
        text = next(m["content"] for m in reversed(data["messages"]) if m["role"] == "user")
        return web.json_response({
            "id": "chatcmpl-student", "object": "chat.completion", "created": 0,
            "model": data["model"], "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": f"echo: {text}"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})

    def start(self) -> StudentServer:
        import asyncio

        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_get("/v1/models", self._models)
            app.router.add_post("/v1/chat/completions", self._chat)
            runner = web.AppRunner(app)
            self._loop.run_until_complete(runner.setup())
            self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        return self


def write_configs(tmp: Path, url: str, upstream: str, students: str) -> tuple[Path, Path]:
    """The replicas' config, and the workers' (the same, logging at info)."""
    students_dir = tmp / "students"
    (students_dir / TASK / "v1").mkdir(parents=True)
    for name in ("slimgate.json", "adapter_config.json"):  # a complete LoRA student on disk
        (students_dir / TASK / "v1" / name).write_text("{}")
    more = f"""
[students]
refresh_s = {REFRESH_S}

[students.engine]
type = "vllm"
base_url = "{students}"

[distill]
students_dir = "{students_dir}"
min_examples = 100000

[worker]
embedded = false
interval_s = 1.0
gate_interval_s = 0.5
standby_poll_s = 0.5

[policy]                # gates small enough for a test: 10 agreeing shadows, then primary
min_agreement = 0.5
min_heldout = 10
min_live = 10
shadow_rate = 1.0
canary_steps = []
"""
    toml = gateway_toml(port=free_port(), store=tmp / "unused.db", keys_env="REPLICAS_TEST_KEYS",
                        model="m", base_url=upstream, model_extra="max_retries = 0", more=more)
    toml = toml.replace(f'path = "{tmp / "unused.db"}"',
                        f'url = "{url}"\ndurability = "sync"\nbatch_size = 64')
    replicas, workers = tmp / "replicas.toml", tmp / "workers.toml"
    replicas.write_text(toml)
    workers.write_text(toml.replace('log_level = "warning"', 'log_level = "info"'))
    return replicas, workers


def seed(url: str) -> None:
    """The triage task, observed, with a registered student that passed its held-out run:
    the leading worker's gate takes it from there."""
    con = connect(url)
    try:
        now = time.time()
        tenant = hashlib.sha256(KEY.encode()).hexdigest()[:12]  # the key's own namespace
        info = orjson.dumps({"fingerprints": [fingerprint(body("x"))],
                             "tenant": tenant}).decode()
        con.execute(
            "INSERT INTO tasks (id, label, kind, stage, explicit, info, created_at, updated_at, "
            "step, stage_since, student_version) VALUES (?, 'triage', 'text', 'observe', 0, "
            "?, ?, ?, 0, ?, 1)", (TASK, info, now, now, now))
        con.execute(
            "INSERT INTO students (task, version, path, base_model, status, metrics, created_at) "
            "VALUES (?, 1, ?, 'scratch:tiny', 'passed', '{\"n\": 10, \"agree\": 10}', ?)",
            (TASK, f"{TASK}/v1", now))
    finally:
        con.close()


ENV = {**os.environ, "REPLICAS_TEST_KEYS": KEY, "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT,
                                env=ENV, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """`gateway.offline.local.wait_ready`, with the replica's log in the failure."""
    try:
        local_wait_ready(f"http://127.0.0.1:{port}/readyz", proc, timeout_s=START_TIMEOUT_S)
    except RuntimeError as e:
        raise RuntimeError(f"{e}:\n{log.read_text()}") from None


def wait_for(log: Path, text: str, deadline_s: float) -> bool:
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if text in log.read_text():
            return True
        time.sleep(0.2)
    return False


def leads(proc: subprocess.Popen[bytes]) -> str:
    return f"this worker (pid {proc.pid} on {socket.gethostname()}) leads"


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def who_serves(client: openai.OpenAI, text: str) -> str:
    raw = client.chat.completions.with_raw_response.create(**body(text))
    assert raw.parse().choices[0].message.content == f"echo: {text}"
    return raw.headers["x-slimgate-backend"]


def until_all(clients: list[openai.OpenAI], backend: str, deadline_s: float) -> list[str]:
    deadline = time.monotonic() + deadline_s
    while True:
        seen = [who_serves(c, "is it down") for c in clients]
        if all(b == backend for b in seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def test_three_replicas_two_workers_one_database(tmp_path: Path) -> None:
    upstream, upstream_url = start_upstream_process()
    student = StudentServer().start()
    with pg_database() as url, processes() as procs:
        procs.append(upstream)
        seed(url)
        replicas_cfg, workers_cfg = write_configs(
            tmp_path, url, upstream_url, f"http://127.0.0.1:{student.port}/v1")
        ports = [free_port() for _ in range(3)]
        gw = [start(["serve", "--no-worker", "--config", str(replicas_cfg), "--port", str(p)],
                    tmp_path / f"gw{i}.log") for i, p in enumerate(ports)]
        procs.extend(gw)
        w_logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
        workers = [start(["worker", "--config", str(workers_cfg)], w_logs[0])]
        procs.extend(workers)
        for i, (proc, port) in enumerate(zip(gw, ports, strict=True)):
            wait_ready(proc, port, tmp_path / f"gw{i}.log")
        assert wait_for(w_logs[0], leads(workers[0]), START_TIMEOUT_S), w_logs[0].read_text()
        workers.append(start(["worker", "--config", str(workers_cfg)], w_logs[1]))
        procs.append(workers[1])
        assert wait_for(w_logs[1], "stands by", START_TIMEOUT_S), w_logs[1].read_text()

        clients = [openai.OpenAI(base_url=f"http://127.0.0.1:{p}/v1", api_key=KEY, max_retries=0,
                                 timeout=20) for p in ports]
        con = connect(url)
        try:
            # 1. The leader promotes the task to shadow, then, once the replicas' shadow
            # comparisons agree, to primary; every replica then serves the student (told at
            # once by NOTIFY, else within refresh_s by polling; the test's bound is looser
            # only so that a loaded machine cannot fail it).
            assert [who_serves(c, "printer jammed") for c in clients] == ["teacher"] * 3
            promoted = None
            deadline = time.time() + 60
            i = 0
            while promoted is None and time.time() < deadline:
                who_serves(clients[i % 3], f"printer jammed {i}")  # shadowed while in shadow
                i += 1
                promoted = con.execute(
                    "SELECT actor FROM stage_changes WHERE task = ? AND to_stage = 'primary'",
                    (TASK,)).fetchone()
            assert promoted is not None and promoted[0] == "policy", w_logs[0].read_text()
            assert until_all(clients, "student", 6 * REFRESH_S) == ["student"] * 3
            assert student.calls >= 10

            # 2. The leading worker dies; the standby takes the lead and the gate goes on:
            # pinned to the teacher, the task is rolled back by the new leader's gate.
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(10)
            assert wait_for(w_logs[1], leads(workers[1]), 30), w_logs[1].read_text()
            shown = subprocess.run([sys.executable, "-m", "gateway.cli", "tasks", "--config",
                                    str(workers_cfg)], cwd=ROOT, env=ENV, capture_output=True,
                                   text=True, timeout=60)
            assert f"leading worker: pid {workers[1].pid} on" in shown.stdout, shown.stdout
            set_pin(con, TASK, "teacher")
            assert until_all(clients, "teacher", 6 * REFRESH_S) == ["teacher"] * 3
            deadline = time.time() + 30
            rolled_back: list[Any] = []
            while time.time() < deadline and not rolled_back:
                rolled_back = con.execute(
                    "SELECT * FROM stage_changes WHERE task = ? AND actor = 'policy' AND "
                    "to_stage = 'observe'", (TASK,)).fetchall()
                time.sleep(0.3)
            assert rolled_back, w_logs[1].read_text()
        finally:
            con.close()

        # 3. One replica is killed with -9 under load: every answered request is stored.
        acknowledged: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def load(client: openai.OpenAI) -> None:
            while not stop.is_set():
                rid = f"load-{uuid.uuid4().hex}"
                try:
                    client.chat.completions.create(**body("how are you"),
                                                   extra_headers={"x-request-id": rid})
                except openai.APIError:
                    continue  # refused or cut: not acknowledged, may or may not be stored
                with lock:
                    acknowledged.append(rid)

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            runs = [pool.submit(load, clients[i % 3]) for i in range(6)]
            deadline = time.monotonic() + 120
            while len(acknowledged) <= 20 and time.monotonic() < deadline:
                time.sleep(0.1)  # the load is real before the kill
            # Writes are held up while the replica dies, so the kill surely lands between
            # answer and commit wherever the mode would answer first (async does: this test
            # fails with durability = "async").
            with psycopg.connect(url) as locker:
                locker.execute("LOCK TABLE exchanges IN SHARE MODE")
                time.sleep(1.5)
                gw[1].send_signal(signal.SIGKILL)
                gw[1].wait(10)
                locker.rollback()
            time.sleep(2)
            stop.set()
            for r in runs:
                r.result()
        con = connect(url)
        try:
            stored = {r[0] for r in con.execute(
                "SELECT request_id FROM exchanges WHERE request_id LIKE 'load-%'")}
        finally:
            con.close()
        assert len(acknowledged) > 20  # the load was real
        assert set(acknowledged) <= stored, f"lost {len(set(acknowledged) - stored)}"
