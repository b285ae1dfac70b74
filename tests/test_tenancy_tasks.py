"""Tenants stay apart in discovery, assignment and training data (issue 20, points 1, 2, 5).

Each test here failed on the code before the fix: discovery read the bare `metadata.task`
and pooled two tenants' `invoices` into one task; an untagged request matched every
tenant's fingerprints; any key could mint a task (and a metric label) per name it sent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from distill.discover import discover
from distill.pipeline import curate_task, discover_tasks
from gateway.app import create_app
from gateway.config import parse_config
from gateway.embed import SharedEmbedder
from gateway.store.catalog import list_tasks
from gateway.store.db import connect
from gateway.task_assign import TaskAssigner
from gateway.task_ids import task_tenant
from tests.fake_upstream import FakeUpstream
from tests.helpers import (
    KEY_A,
    KEY_B,
    METRICS_AUTH,
    ScriptedStudent,
    gateway_config,
    key_id,
    post_all,
)

A, B = key_id(KEY_A), key_id(KEY_B)
SYSTEM = "You sort support tickets into billing, bug or other. Answer with JSON only."


def body(user: str, tag: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "gpt-test", "response_format": {"type": "json_object"},
                           "messages": [{"role": "system", "content": SYSTEM},
                                        {"role": "user", "content": user}]}
    if tag:
        out["metadata"] = {"task": tag}
    return out


def row(seq: int, key: str | None, request: dict[str, Any], task: str | None = None
        ) -> dict[str, Any]:
    return {"seq": seq, "request_id": f"r{seq}", "created_at": 0.0, "key_id": key,
            "task": task, "status": 200, "finish_reason": "stop", "backend": "teacher",
            "request": request, "response": {"choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant",
                                                         "content": '{"queue": "billing"}'}}]}}


def namespace(key: str | None) -> str | None:
    return key  # each key its own tenant, as `server.client_tasks = "tenant"` does by default


def test_two_tenants_naming_the_same_task_get_a_task_each() -> None:
    rows = [row(i, A if i % 2 else B, body(f"ticket {i}", "invoices"),
                task=f"{A if i % 2 else B}.invoices") for i in range(60)]
    found = discover(rows, min_task_examples=5, namespace_of=namespace)
    tasks = {t.id: t for t in found.tasks}
    assert set(tasks) == {f"{A}.invoices", f"{B}.invoices"}  # never a bare, pooled "invoices"
    assert task_tenant(tasks[f"{A}.invoices"].info) == A
    assert not found.assignments  # every row stays where its sender put it


def test_two_tenants_running_the_same_agent_get_a_task_each() -> None:
    rows = [row(i, A if i % 2 else B, body(f"ticket {i}")) for i in range(80)]
    found = discover(rows, min_task_examples=5, namespace_of=namespace)
    assert len(found.tasks) == 2 and {task_tenant(t.info) for t in found.tasks} == {A, B}
    owner = {t.id: task_tenant(t.info) for t in found.tasks}
    by_seq = {r["seq"]: r["key_id"] for r in rows}
    assert all(owner[task] == by_seq[seq] for task, seq in found.assignments)
    # An operator who wants one pool says so: a shared namespace pools them again.
    shared = discover(rows, min_task_examples=5, namespace_of=lambda key: None)
    assert len(shared.tasks) == 1 and task_tenant(shared.tasks[0].info) is None


def test_an_untagged_request_reaches_only_its_own_tenants_tasks() -> None:
    rows = [row(i, A, body(f"ticket {i}")) for i in range(30)]
    (task,) = discover(rows, min_task_examples=5, namespace_of=namespace).tasks
    assigner = TaskAssigner.from_tasks([task])
    assert assigner.assign(body("ticket 99"), None, A).task == task.id
    assert assigner.assign(body("ticket 99"), None, B).task is None  # B's prompt: B's own
    assert assigner.assign(body("ticket 99"), None, None).task is None
    assert assigner.assign(body("x", "triage"), None, B).task == f"{B}.triage"


async def test_b_sending_as_prompt_is_never_answered_by_as_student(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str,
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream)
    rows = [row(i, A, body(f"ticket {i}")) for i in range(30)]
    (task,) = discover(rows, min_task_examples=5, namespace_of=namespace).tasks
    con = connect(cfg.store.path)
    con.execute("INSERT INTO tasks (id, label, kind, stage, explicit, info, created_at, "
                "updated_at, step, stage_since, student_version) VALUES (?, 'triage', 'json', "
                "'primary', 0, ?, ?, ?, 0, ?, 1)",
                (task.id, orjson.dumps(task.info).decode(), time.time(), time.time(),
                 time.time()))
    con.close()
    app = create_app(cfg, student_factory=lambda t, v: ScriptedStudent())
    r_a, r_b = await post_all(app, [(KEY_A, body("ticket 7"), {}), (KEY_B, body("ticket 7"), {})])
    assert r_a.headers["x-slimgate-backend"] == "student"
    assert r_a.headers["x-slimgate-task"] == task.id
    assert r_b.headers["x-slimgate-backend"] == "teacher"
    assert "x-slimgate-task" not in r_b.headers  # neither A's task nor A's key id disclosed
    con = connect(cfg.store.path)
    tasks = dict(con.execute("SELECT key_id, task FROM exchanges").fetchall())
    con.close()
    assert tasks == {A: task.id, B: None}  # B's row is not A's training data


def test_curation_reads_only_the_tasks_tenants_rows(
        tmp_path: Path, shared_embedder: SharedEmbedder) -> None:
    cfg = parse_config({"store": {"path": str(tmp_path / "s.db")}})
    con = connect(cfg.store.path)
    rows = [row(i, A if i < 30 else B, body(f"ticket {i}")) for i in range(40)]
    (task,) = discover(rows[:30], min_task_examples=5, namespace_of=namespace).tasks
    from gateway.store.catalog import upsert_task

    upsert_task(con, task)
    con.executemany(  # B's rows under A's task, as an older gateway recorded them
        "INSERT INTO exchanges (request_id, created_at, key_id, endpoint, model, backend, task, "
        "stream, request, response, status) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [(r["request_id"], 0.0, r["key_id"], "chat/completions", "m", "teacher", task.id, 0,
          orjson.dumps(r["request"]).decode(), orjson.dumps(r["response"]).decode(), 200)
         for r in rows])
    curated = curate_task(con, cfg, task)
    assert curated.requests == 30  # A's only
    discover_tasks(con, cfg, shared_embedder)  # and rediscovery takes B's rows out of it
    moved = con.execute("SELECT DISTINCT task FROM exchanges WHERE key_id = ?", (B,)).fetchall()
    assert [m[0] for m in moved] == [None]  # 10 rows: not yet a task of B's own
    assert curate_task(con, cfg, task).requests == 30
    con.close()


async def test_task_names_any_key_sends_are_no_tasks_nor_labels_until_they_have_data(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, shared_embedder: SharedEmbedder,
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, server={
        "api_keys_env": "SLIMGATE_TEST_KEYS", "metrics_keys_env": "SLIMGATE_TEST_METRICS_KEYS",
        "max_tasks_per_tenant": 3})
    app = create_app(cfg)
    spam = [(KEY_A, body("hi", f"name-{i}"), {}) for i in range(30)]
    real = [(KEY_A, body(f"ticket {i}", f"queue-{q}"), {}) for q in range(5) for i in range(25)]
    await post_all(app, spam + real)
    con = connect(cfg.store.path)
    discover_tasks(con, cfg, shared_embedder)
    tasks = {t.id: t.info["count"] for t in list_tasks(con)}
    con.close()
    # 30 one-request names: no task; 5 real ones of 25 requests: capped at 3 per tenant
    assert len(tasks) == 3 and all(n == 25 for n in tasks.values())
    app = create_app(cfg)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        for key, b, _ in spam[:5]:
            await c.post("/v1/chat/completions", json=b,
                         headers={"authorization": f"Bearer {key}"})
        metrics = (await c.get("/metrics", headers=METRICS_AUTH)).text
    assert "name-" not in metrics  # unknown names are one "other" label
