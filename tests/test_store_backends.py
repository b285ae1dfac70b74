"""The store on both engines: the catalog, stages, Responses state and the gateway itself on
SQLite and PostgreSQL alike; PostgreSQL's own parts (concurrent migration, day partitions)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import StoreConfig, parse_config
from gateway.store.base import open_store
from gateway.store.catalog import (
    StudentRecord,
    TaskRecord,
    add_evaluations,
    add_student,
    best_student,
    chat_exchanges,
    get_task,
    list_tasks,
    set_exchange_tasks,
    upsert_task,
)
from gateway.store.migrations import SCHEMA_VERSION, connect, read_secret
from gateway.store.stages import live_evidence, set_pin, set_stage, stage_changes
from tests.conftest import gateway_config, running_client
from tests.fake_upstream import FakeUpstream
from tests.pg import pg_database, store_table

CHAT = {"model": "gpt-test", "messages": [{"role": "system", "content": "Label the ticket."},
                                          {"role": "user", "content": "the printer is on fire"}]}


def _exchange_row(con: Any, i: int, **kw: Any) -> None:
    row = {"request_id": f"r{i}", "created_at": time.time(), "endpoint": "chat/completions",
           "model": "m", "backend": "teacher", "stream": 0, "status": 200,
           "request": '{"messages": [{"role": "user", "content": "hi"}]}',
           "response": '{"choices": []}', **kw}
    con.execute(f"INSERT INTO exchanges ({', '.join(row)}) VALUES "
                f"({', '.join('?' for _ in row)})", list(row.values()))


def test_catalog_and_stages(store_target: str) -> None:
    con = connect(store_target)
    upsert_task(con, TaskRecord(id="t-a", label="orders", kind="json", info={"n": 1}))
    upsert_task(con, TaskRecord(id="t-a", label="orders v2", kind="json", info={"n": 2}))
    task = get_task(con, "t-a")
    assert task is not None and task.label == "orders v2" and task.info == {"n": 2}
    add_student(con, StudentRecord(task="t-a", version=1, path="t-a/v1", base_model="tiny",
                                   status="passed", metrics={"agree": 9}))
    add_evaluations(con, "t-a", 1, [{"request_id": "r1", "score": 0.5, "agree": False,
                                     "valid": True, "student": {"content": "x"}}])
    assert best_student(con, "t-a").version == 1  # type: ignore[union-attr]
    first = set_stage(con, "t-a", "shadow", version=1, actor="distill", reason="held-out ok")
    second = set_stage(con, "t-a", "canary", to_step=1, actor="policy", reason="live ok")
    assert second.seq > first.seq > 0 and second.version == 1
    assert [c.to_stage for c in stage_changes(con, "t-a")] == ["shadow", "canary"]
    set_pin(con, "t-a", "teacher")
    with pytest.raises(KeyError):
        set_pin(con, "nope", "teacher")
    for i in range(4):
        _exchange_row(con, i, task="t-a", student_version=1, backend="student",
                      latency_ms=10.0 * (i + 1), fallback="timeout" if i == 3 else None)
    con.execute("INSERT INTO comparisons (created_at, task, version, mode, request_id, score, "
                "agree, valid) VALUES (?, 't-a', 1, 'shadow', 'r0', 1.0, 1, 1)", (time.time(),))
    ev = live_evidence(con, "t-a", 1, 0.0)
    assert ev["live_n"] == 1 and ev["live_agree"] == 1 and ev["student_served"] == 4
    assert ev["fallbacks"] == 1 and ev["student_errors"] == 1 and ev["student_p95_ms"] > 0
    _exchange_row(con, 10)
    seq = max(r["seq"] for r in chat_exchanges(con))
    set_exchange_tasks(con, [("t-a", seq)])
    assert [r["task"] for r in chat_exchanges(con, task="t-a")][-1] == "t-a"
    assert read_secret(con, "sampling") == read_secret(con, "sampling")
    assert [t.pin for t in list_tasks(con)] == ["teacher"]
    con.close()


async def test_async_store_rows_and_state(store_target: str) -> None:
    store = await open_store(StoreConfig(**store_table(store_target)))
    try:
        assert store.dialect == ("postgres" if "://" in store_target else "sqlite")
        assert await store.ping()
        secret = await store.secret("sampling")
        assert len(secret) == 32 and await store.secret("sampling") == secret
        row = ("resp_1", "k", 1.0, "m", "r1", None, "[]", '{"output": []}')
        await store.write_responses([row])
        await store.write_responses([(*row[:-1], '{"output": [1]}')])  # a retried write
        assert (await store.response_row("resp_1"))["response"] == '{"output": [1]}'  # type: ignore[index]
        await store.delete_response("resp_1")
        assert await store.response_row("resp_1") is None
        await store.write_texts([("h1", '"x"', 1.0, 1.0)])
        await store.write_texts([("h1", '"x"', 1.0, 5.0)])
    finally:
        await store.close()
    con = connect(store_target)
    assert [tuple(r) for r in con.execute("SELECT hash, seen_at FROM texts")] == [("h1", 5.0)]
    con.close()


async def test_gateway_records_into_either_store(
    store_target: str, tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, store={**store_table(store_target),
                                                          "durability": "sync"})
    async with running_client(cfg) as client:
        for _ in range(3):
            r = await client.post("/v1/chat/completions", json=CHAT,
                                  headers={"authorization": f"Bearer {keys}"})
            assert r.status_code == 200
        health = await client.get("/healthz")
        assert health.status_code == 200
    con = connect(cfg.store)
    rows = list(con.execute("SELECT status, request, prompt_tokens FROM exchanges"))
    con.close()
    assert len(rows) == 3 and all(r["status"] == 200 and r["request"] for r in rows)


def test_replicas_migrate_one_database_at_once() -> None:
    """Several processes starting together on a new database: each migration runs once."""
    with pg_database() as url:
        errors: list[BaseException] = []

        def open_one() -> None:
            try:
                connect(url).close()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=open_one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        con = connect(url)
        assert [r[0] for r in con.execute("SELECT version FROM slimgate_schema")] == [
            SCHEMA_VERSION]
        con.close()


def test_exchanges_land_in_day_partitions() -> None:
    with pg_database() as url:
        con = connect(url)
        now = time.time()
        _exchange_row(con, 1, created_at=now)
        _exchange_row(con, 2, created_at=now - 400 * 86_400)  # no partition that far back
        where = {r[0]: r[1] for r in con.execute(
            "SELECT request_id, tableoid::regclass::text FROM exchanges")}
        con.close()
    assert where["r1"] == "exchanges_p" + time.strftime("%Y%m%d", time.gmtime(now))
    assert where["r2"] == "exchanges_default"


def test_store_url_must_not_hold_a_password() -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match="password_env"):
        parse_config({"store": {"url": "postgresql://u:hunter2@db/slimgate"}})
    with pytest.raises(ConfigError, match="postgresql://"):
        parse_config({"store": {"url": "mysql://u@db/slimgate"}})
