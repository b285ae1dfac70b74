"""Tenancy as a property: whatever two tenants send, neither reaches the other's tasks.

Hypothesis draws traffic from two keys of different tenants — explicit names (shared, or
naming the other tenant's full id), the same agent prompts, prompts a word apart, tools —
and drives the gateway in-process, then the worker's discovery pass, then the gateway again
with every task promoted to a student that answers with its own task id. Checked: every
task's rows, and so its training data, come from one tenant; every task a response names in
`x-slimgate-task`, and every student that answers, is the caller's own tenant's.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill.pipeline import discover_tasks
from gateway.app import create_app
from gateway.config import Config
from gateway.embed import SharedEmbedder
from gateway.store.catalog import list_tasks
from gateway.store.db import connect
from gateway.task_ids import task_tenant
from tests.fake_upstream import FakeUpstream
from tests.helpers import ScriptedStudent, gateway_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # discovery embeds on one thread
KEYS = {"A": "sk-gw-test-1", "B": "sk-gw-test-2"}
KEY_IDS = {name: hashlib.sha256(k.encode()).hexdigest()[:12] for name, k in KEYS.items()}
SYSTEMS = [
    "You sort support tickets. Answer with JSON only.",
    "You sort support tickets. Answer with JSON only!",  # a word away: one task when alone
    "You schedule meetings with the calendar tools.",
]
TOOLS = [{"type": "function", "function": {
    "name": "book", "parameters": {"type": "object", "properties": {"day": {"type": "string"}}}}}]
USERS = ["printer jammed", "refund order 7", "book Monday 10:00", "invoice is wrong"]
TAGS = [None, None, "invoices", "triage", f"{KEY_IDS['A']}.invoices"]

Request = tuple[str, int, bool, str | None, int]  # tenant, system, tools, tag, user text
traffic = st.lists(st.tuples(st.sampled_from(sorted(KEYS)), st.integers(0, len(SYSTEMS) - 1),
                             st.booleans(), st.sampled_from(TAGS),
                             st.integers(0, len(USERS) - 1)),
                   min_size=8, max_size=40)


def body_of(req: Request) -> dict[str, Any]:
    _, system, tools, tag, user = req
    body: dict[str, Any] = {"model": "gpt-test", "messages": [
        {"role": "system", "content": SYSTEMS[system]},
        {"role": "user", "content": USERS[user]}]}
    if tools:
        body["tools"] = TOOLS
    else:
        body["response_format"] = {"type": "json_object"}
    if tag:
        body["metadata"] = {"task": tag}
    return body


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def environment() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("SLIMGATE_TEST_KEYS", "SLIMGATE_TEST_PROVIDER_KEY")}
    os.environ["SLIMGATE_TEST_KEYS"] = ",".join(KEYS.values())
    os.environ["SLIMGATE_TEST_PROVIDER_KEY"] = "sk-provider-secret-123"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def student_for(task: str, version: int) -> ScriptedStudent:
    return ScriptedStudent(content=orjson.dumps({"served_by": task}).decode())


async def send(cfg: Config, reqs: list[Request]) -> list[tuple[str, httpx.Response]]:
    app = create_app(cfg, student_factory=student_for)
    out = []
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        for req in reqs:
            r = await c.post("/v1/chat/completions", json=body_of(req),
                             headers={"authorization": f"Bearer {KEYS[req[0]]}"})
            assert r.status_code == 200, r.text
            out.append((req[0], r))
        await app.state.slimgate.shadow.drain()
        await app.state.slimgate.recorder.flush()
    return out


def owners(cfg: Config) -> dict[str, set[str]]:
    """The keys whose rows sit under each task name in the store."""
    con = connect(cfg.store.path)
    try:
        out: dict[str, set[str]] = {}
        for owner, task in con.execute("SELECT key_id, task FROM exchanges").fetchall():
            if task is not None:
                out.setdefault(task, set()).add(owner)
        return out
    finally:
        con.close()


def check_rows(cfg: Config) -> None:
    """Every task's rows (its training data) come from one tenant's keys, the one it names."""
    con = connect(cfg.store.path)
    tasks = {t.id: t for t in list_tasks(con)}
    con.close()
    for task, keys in owners(cfg).items():
        assert len(keys) == 1, (task, keys)
        if task in tasks:
            assert task_tenant(tasks[task].info) in keys, (task, keys)
        else:  # a name not (yet) a task: the sender's own
            assert task.startswith(next(iter(keys)) + "."), (task, keys)


def check_answers(answers: list[tuple[str, httpx.Response]], cfg: Config) -> None:
    """Each task named to a caller, and each student that answered it, is the caller's."""
    by_task = owners(cfg)
    for sender, r in answers:
        named = r.headers.get("x-slimgate-task")
        if named:
            assert by_task[named] == {KEY_IDS[sender]}, (sender, named)
        if r.headers.get("x-slimgate-backend") == "student":
            served_by = orjson.loads(r.json()["choices"][0]["message"]["content"])["served_by"]
            assert served_by == named


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(reqs=traffic)
def test_two_tenants_never_reach_each_others_tasks(
    reqs: list[Request], upstream: FakeUpstream, environment: None,
    shared_embedder: SharedEmbedder,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = gateway_config(Path(tmp), upstream, distill={
            "min_examples": 20, "min_task_requests": 2,
            "students_dir": str(Path(tmp) / "students")})
        asyncio.run(send(cfg, reqs))
        con = connect(cfg.store.path)
        try:
            discover_tasks(con, cfg, shared_embedder)
            con.execute("UPDATE tasks SET stage = 'primary', student_version = 1")
        finally:
            con.close()
        check_rows(cfg)
        answers = asyncio.run(send(cfg, reqs))
        check_answers(answers, cfg)
        check_rows(cfg)
