"""The store on both engines: the catalog, stages, Responses state and the gateway itself on
SQLite and PostgreSQL alike; PostgreSQL's own parts (concurrent migration, day partitions)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config import StoreConfig, parse_config
from gateway.store.base import Notifying, open_store
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
from gateway.store.db import connect, read_secret
from gateway.store.migrations import SCHEMA_VERSION
from gateway.store.stages import live_evidence, set_pin, set_stage, stage_changes
from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config, running_client
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
        # only PostgreSQL hears other processes' changes at once (the routing table listens)
        assert isinstance(store, Notifying) == (store.dialect == "postgres")
        assert await store.ping()
        secret = await store.secret("sampling")
        assert len(secret) == 32 and await store.secret("sampling") == secret
        row = ("resp_1", "k", 1.0, "m", "r1", None, "[]", '{"output": []}', 1, 16)
        await store.write_responses([row])
        await store.write_responses([(*row[:7], '{"output": [1]}', 1, 17)])  # a retried write
        assert (await store.response_row("resp_1"))["response"] == '{"output": [1]}'  # type: ignore[index]
        await store.delete_response("resp_1")
        assert await store.response_row("resp_1") is None
        await store.write_texts([("h1", '"x"', 1.0, 1.0)])
        await store.write_texts([("h1", '"x"', 1.0, 5.0)])
    finally:
        await store.close()
    con = connect(store_target)
    assert [tuple(r) for r in con.execute("SELECT hash, seen_at FROM texts")] == [("h1", 5.0)]
    assert read_secret(con, "sampling") == secret  # one secret for sync and async readers
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
    for url in ("postgresql://db/slimgate?pass%77ord=hunter2",  # libpq decodes both
                "postgresql://u%3Ahunter2@db/slimgate"):
        with pytest.raises(ConfigError, match="password_env") as info:
            parse_config({"store": {"url": url}})
        assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="postgresql://"):
        parse_config({"store": {"url": "mysql://u@db/slimgate"}})


SYSTEM = ("You are the order desk of Blue Harbor Coffee. Extract the order as JSON with the "
          "fields customer, items and total. Contact ops@blueharbor.example on doubt. " * 3)
TOOLS = [{"type": "function", "function": {
    "name": "lookup_order", "description": "Find an order by its number. " * 8,
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}}]


def _agent_request(i: int) -> dict[str, Any]:
    return {"model": "m", "tools": TOOLS, "messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": f"order #{i}"}]}


async def _record(target: str, requests: list[dict[str, Any]], **options: Any) -> None:
    from gateway.metrics import Metrics
    from gateway.store.recorder import Exchange, Recorder

    store = await open_store(StoreConfig(**store_table(target)))
    rec = Recorder(store, Metrics(), **options)
    rec.start()
    for i, request in enumerate(requests):
        rec.record(Exchange(
            request_id=f"r{i}", created_at=time.time(), endpoint="chat/completions", model="m",
            stream=False, request=request, response={"choices": [{"message": {
                "role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}))
    await rec.close()
    await store.close()


async def test_static_text_is_stored_once_and_read_back_whole(
    store_target: str, tmp_path: Path
) -> None:
    from gateway.offline.traces import export_traces

    sent = [_agent_request(i) for i in range(5)]
    await _record(store_target, sent)
    con = connect(store_target)
    assert con.execute("SELECT COUNT(*) FROM texts").fetchone()[0] == 2  # prompt, tool set
    stored = con.execute("SELECT request FROM exchanges ORDER BY seq").fetchone()[0]
    assert "Blue Harbor" not in stored and "lookup_order" not in stored
    assert [r["request"] for r in chat_exchanges(con)] == sent
    con.close()
    export_traces(store_target, tmp_path / "t.jsonl")
    lines = [orjson.loads(x) for x in (tmp_path / "t.jsonl").read_bytes().splitlines()]
    assert [x["request"] for x in lines] == sent


async def test_static_text_is_scrubbed_like_the_rest(store_target: str) -> None:
    await _record(store_target, [_agent_request(1)], scrub=True)
    con = connect(store_target)
    [body] = [r[0] for r in con.execute("SELECT body FROM texts WHERE body LIKE '%order desk%'")]
    [request] = [r["request"] for r in chat_exchanges(con)]
    con.close()
    assert "ops@blueharbor.example" not in body
    assert request["messages"][0]["content"] == orjson.loads(body)


async def test_a_client_cannot_smuggle_a_reference(store_target: str) -> None:
    """Only the recorder's own column refers to texts: content that looks like a reference
    is recorded as sent."""
    await _record(store_target, [_agent_request(1)])
    con = connect(store_target)
    digest = con.execute("SELECT hash FROM texts").fetchone()[0]
    con.close()
    sneaky = {"model": "m", "messages": [{"role": "user", "content": {"$ref": digest}},
                                         {"role": "user", "content": digest}]}
    await _record(store_target, [sneaky])
    con = connect(store_target)
    assert [r["request"] for r in chat_exchanges(con)][-1] == sneaky
    con.close()


def test_retention_deletes_old_traffic_and_keeps_the_rest(store_target: str) -> None:
    from gateway.store.retention import maintain

    con = connect(store_target)
    now = time.time()
    for i, age_days in enumerate([40, 35, 1, 0]):
        _exchange_row(con, i, created_at=now - age_days * 86_400)
        con.execute("INSERT INTO comparisons (created_at, task, version, mode, request_id, "
                    "score, agree, valid) VALUES (?, 't', 1, 'shadow', ?, 1, 1, 1)",
                    (now - age_days * 86_400, f"r{i}"))
        con.execute("INSERT INTO texts (hash, body, created_at, seen_at) VALUES (?, '1', ?, ?)",
                    (f"h{i}", now - age_days * 86_400, now - age_days * 86_400))
    done = maintain(con, 30, now=now)
    left = sorted(r[0] for r in con.execute("SELECT request_id FROM exchanges"))
    assert left == ["r2", "r3"]
    assert con.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 2
    assert con.execute("SELECT COUNT(*) FROM texts").fetchone()[0] == 2
    assert done["deleted"]["comparisons"] == 2
    assert maintain(con, 0, now=now)["deleted"] == {}  # 0 keeps everything
    con.close()


def test_retention_drops_whole_day_partitions() -> None:
    from gateway.store.pg_schema import ensure_partitions, partition_name
    from gateway.store.retention import maintain

    with pg_database() as url:
        con = connect(url)
        now = time.time()
        old = now - 10 * 86_400
        ensure_partitions(con.raw, old, ahead=0)  # a partition for a day ten days back
        _exchange_row(con, 1, created_at=old)
        _exchange_row(con, 2, created_at=now)
        done = maintain(con, 5, now=now)
        left = [r[0] for r in con.execute("SELECT request_id FROM exchanges")]
        con.close()
    assert partition_name(old - old % 86_400) in done["partitions_dropped"]
    assert left == ["r2"]


def test_unreachable_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main
    from gateway.offline.local import free_port

    monkeypatch.setenv("SLIMGATE_TEST_PG_PASSWORD", "hunter2-secret")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\nurl = "postgresql://slimuser@127.0.0.1:{free_port()}/slimgate'
                   '?sslmode=disable"\npassword_env = "SLIMGATE_TEST_PG_PASSWORD"\n')
    assert main(["tasks", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "cannot open store postgresql://127.0.0.1:" in err
    assert "slimuser" not in err and "sslmode" not in err  # no userinfo, no query
    assert "hunter2" not in err and "Traceback" not in err


async def test_nul_characters_do_not_lose_a_batch(store_target: str) -> None:
    from gateway.metrics import Metrics
    from gateway.store.recorder import Exchange, Recorder

    store = await open_store(StoreConfig(**store_table(store_target)))
    rec = Recorder(store, Metrics())
    rec.start()
    for i, error in enumerate(["upstream said \x00 nothing", None]):
        rec.record(Exchange(request_id=f"r{i}", created_at=time.time(), endpoint="chat/completions",
                            model="m", stream=False, status=502, error=error,
                            request={"messages": [{"role": "user", "content": "a\x00b"}]}))
    await rec.close()
    assert await store.count_exchanges() == 2
    await store.close()
    con = connect(store_target)
    [request] = [r["request"] for r in chat_exchanges(con)][:1]
    con.close()
    assert request["messages"][0]["content"] == "a\x00b"


def test_unset_password_variable_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main

    monkeypatch.delenv("SLIMGATE_TEST_PG_PASSWORD", raising=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nurl = "postgresql://slimgate@127.0.0.1:5432/slimgate"\n'
                   'password_env = "SLIMGATE_TEST_PG_PASSWORD"\n')
    assert main(["tasks", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "SLIMGATE_TEST_PG_PASSWORD" in err and "Traceback" not in err
