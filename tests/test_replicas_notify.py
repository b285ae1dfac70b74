"""On PostgreSQL a stage or pin change reaches every replica's routing at once (LISTEN/
NOTIFY), not at the next poll: two gateways on one database, polling once an hour.

The tests wait for what they need (the replicas' LISTEN sessions, a change to arrive) with
generous bounds that only keep a failure from hanging; they never sleep a guessed time.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.app import create_app
from gateway.fingerprint import fingerprint
from gateway.store.db import connect
from gateway.store.stages import set_pin, set_stage
from tests.fake_upstream import FakeUpstream
from tests.helpers import TEST_TENANT, ScriptedStudent, gateway_config
from tests.pg import pg_database

BODY = {"model": "gpt-test", "messages": [{"role": "system", "content": "Label the ticket."},
                                          {"role": "user", "content": "printer jammed"}]}


def add_task(url: str) -> None:
    con = connect(url)
    try:
        info = orjson.dumps({"fingerprints": [fingerprint(BODY)], "tenant": TEST_TENANT}).decode()
        con.execute(
            "INSERT INTO tasks (id, label, kind, stage, explicit, info, created_at, updated_at, "
            "step, stage_since, student_version) VALUES ('t-triage', 'triage', 'text', "
            "'observe', 0, ?, ?, ?, 0, ?, 1)", (info, time.time(), time.time(), time.time()))
    finally:
        con.close()


async def backend_of(client: httpx.AsyncClient) -> str:
    r = await client.post("/v1/chat/completions", json=BODY)
    assert r.status_code == 200, r.text
    return r.headers["x-slimgate-backend"]


async def listeners(url: str) -> int:
    """The sessions LISTENing on the database at `url`: one per replica that hears changes."""
    import psycopg

    def count() -> int:
        with psycopg.connect(url, autocommit=True) as admin:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                "'LISTEN%' AND datname = current_database()").fetchone()
        return int(row[0]) if row else 0

    return await asyncio.to_thread(count)


async def until_listening(url: str, n: int, deadline_s: float = 60) -> int:
    """The LISTEN sessions once there are `n`, or how many there are at the deadline."""
    deadline = time.monotonic() + deadline_s
    while (found := await listeners(url)) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return found


async def until(clients: list[httpx.AsyncClient], backend: str, deadline_s: float) -> list[str]:
    """Each client's backend once all answer `backend`, or what they answer at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        seen = [await backend_of(c) for c in clients]
        if all(b == backend for b in seen) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.1)


async def test_stage_and_pin_changes_reach_every_replica_at_once(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    with pg_database() as url:
        add_task(url)
        async with AsyncExitStack() as stack:
            clients = []
            for name in ("a", "b"):
                # Polling once an hour: only a notification can bring the change in time.
                cfg = gateway_config(tmp_path / name, fresh_upstream, store={"url": url},
                                     students={"refresh_s": 3600})
                app: Any = create_app(cfg, student_factory=lambda t, v: ScriptedStudent("ok"))
                await stack.enter_async_context(app.router.lifespan_context(app))
                clients.append(await stack.enter_async_context(httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://gw",
                    headers={"authorization": f"Bearer {keys}"})))
            assert [await backend_of(c) for c in clients] == ["teacher", "teacher"]
            assert await until_listening(url, 2) == 2  # both replicas hear changes
            con = connect(url)
            try:
                set_stage(con, "t-triage", "primary", version=1, actor="operator",
                          reason="test")
                assert await until(clients, "student", 60) == ["student", "student"]
                set_pin(con, "t-triage", "teacher")
                assert await until(clients, "teacher", 60) == ["teacher", "teacher"]
            finally:
                con.close()


async def test_a_dropped_listen_connection_falls_back_to_polling_then_listens_again(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    import psycopg

    with pg_database() as url:
        add_task(url)
        cfg = gateway_config(tmp_path, fresh_upstream, store={"url": url},
                             students={"refresh_s": 1.0})
        app: Any = create_app(cfg, student_factory=lambda t, v: ScriptedStudent("ok"))
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gw",
                headers={"authorization": f"Bearer {keys}"}) as client:
            routing = app.state.slimgate.routing
            assert await until_listening(url, 1) == 1
            con = connect(url)
            try:
                set_pin(con, "t-triage", "student")
                assert await until([client], "student", 60) == ["student"]
                deadline = time.monotonic() + 60
                while routing.notified < 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert routing.notified == 1  # heard, not only polled
                with psycopg.connect(url, autocommit=True) as admin:  # the LISTEN session dies
                    killed = admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE 'LISTEN%' AND datname = current_database()").fetchall()
                assert killed == [(True,)]
                set_pin(con, "t-triage", "teacher")
                # Polling alone brings the change; the notification was sent to nobody.
                assert await until([client], "teacher", 60) == ["teacher"]
                deadline = time.monotonic() + 60
                while routing.notified < 2 and time.monotonic() < deadline:
                    set_pin(con, "t-triage", None)  # listening again after refresh_s: heard
                    await asyncio.sleep(0.5)
                assert routing.notified >= 2
            finally:
                con.close()
