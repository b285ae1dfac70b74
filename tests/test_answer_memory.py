"""The answer memory: exact repeats learnt from the teacher, gated like a student, served first.

Driven through the app (the loopback fake teacher answers deterministically) and the
worker's memory tick over the same store, the way `slimgate serve` runs them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from distill.memory import MemoryBook, memory_allowed, memory_tick
from gateway.admin.overrides import task_rows
from gateway.answer_memory import memory_key
from gateway.cli.store_commands import memory_text
from gateway.config import Config
from gateway.store.catalog import TaskRecord
from gateway.store.db import connect
from gateway.store.memory import memory_changes, memory_tracks
from tests.fake_upstream import FakeUpstream
from tests.helpers import SYSTEM, TEST_TENANT, add_task, gateway_config, serve_chats

# A small gate so a test walks every stage with tens of requests; the rules are the defaults'.
POLICY = {"min_agreement": 0.8, "confidence": 0.9, "min_heldout": 10, "min_live": 20,
          "canary_steps": [50], "canary_min_comparisons": 10, "canary_min_seconds": 0.0,
          "audit_rate": 0.0, "primary_audit_rate": 0.0}


def order(i: int, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "system", "content": SYSTEM},
                                               {"role": "user", "content": f"order {i}"}],
            "response_format": {"type": "json_object"}, **extra}


def tick(cfg: Config, book: MemoryBook) -> list[str]:
    con = connect(cfg.store.path)
    try:
        return memory_tick(con, cfg, book)
    finally:
        con.close()


def track(cfg: Config) -> tuple[str, int, int]:
    con = connect(cfg.store.path)
    try:
        t = memory_tracks(con)["t-orders"]
        return t.stage, t.step, t.entries
    finally:
        con.close()


def test_the_memory_key_is_the_exact_question_and_what_changes_its_answer() -> None:
    assert memory_key(order(1)) == memory_key(order(1, temperature=0.3, model="other"))
    assert memory_key(order(1)) != memory_key(order(2))
    assert memory_key(order(1)) != memory_key(order(1, max_tokens=5))
    assert memory_key(order(1)) != memory_key(order(1, tool_choice="none"))
    assert memory_key(order(1, n=2)) is None  # one stored answer cannot be two choices
    assert memory_key(order(1, logprobs=True)) is None


def test_free_text_and_scrubbed_stores_get_no_memory(tmp_path: Path,
                                                    fresh_upstream: FakeUpstream) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream)
    policy = cfg.policy.for_task("t")
    assert "never remembered" in str(memory_allowed(cfg, TaskRecord("t", "l", "text"), policy))
    assert memory_allowed(cfg, TaskRecord("t", "l", "tool_call"), policy) is None
    scrubbed = gateway_config(tmp_path, fresh_upstream, store={"path": cfg.store.path,
                                                                "scrub": True})
    assert memory_allowed(scrubbed, TaskRecord("t", "l", "json"), policy) is not None
    off = gateway_config(tmp_path, fresh_upstream, policy={"answer_memory": False})
    assert memory_allowed(off, TaskRecord("t", "l", "json"),
                          off.policy.for_task("t")) is not None


async def test_repeats_walk_the_memory_to_primary_and_are_answered_from_it(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, policy=POLICY)
    add_task(cfg.store.path, "observe")
    app = _app(cfg)
    book = MemoryBook()
    await serve_chats(app, keys, [order(i) for i in range(20)] * 2)  # the teacher answers all
    changes = tick(cfg, book)
    assert track(cfg) == ("shadow", 0, 20), changes  # 20 replays, all agreeing
    await serve_chats(app, keys, [order(i) for i in range(20)])
    tick(cfg, book)
    assert track(cfg)[:2] == ("canary", 0)  # shadow's first look: 20 live replays
    # A 50% canary, split by conversation with the store's random secret: how many of the 20
    # orders the teacher keeps varies by run, and only its answers are replays. Rounds go on
    # until the gate's 10 comparisons are in (a fixed two rounds fall short when the
    # teacher keeps under 5 orders: P = 0.6%, and it failed CI once).
    by: list[str] = []
    for _ in range(10):
        served = await serve_chats(app, keys, [order(i) for i in range(20)])
        by += [r.headers["x-slimgate-backend"] for r in served]
        if by.count("teacher") >= POLICY["canary_min_comparisons"]:
            break
    assert set(by) == {"student", "teacher"}
    tick(cfg, book)
    assert track(cfg)[:2] == ("primary", 0)
    fresh_upstream.requests.clear()
    [again, new] = await serve_chats(app, keys, [order(3), order(99)])
    assert again.headers["x-slimgate-backend"] == "student"
    # the teacher's own words, as it wrote them
    assert again.json()["choices"][0]["message"]["content"] == '{"echo":"order 3"}'
    assert again.json()["model"] == "gpt-test"
    assert new.headers["x-slimgate-backend"] == "teacher"  # never seen: the teacher
    assert len(fresh_upstream.requests) == 1
    rows = db_rows(cfg, "SELECT backend, upstream, student_version, cost_usd FROM exchanges "
                   "ORDER BY seq DESC LIMIT 2")
    assert [tuple(r) for r in rows][1] == ("student", "memory:t-orders", 0, None)
    con = connect(cfg.store.path)
    log = [(c["from_stage"], c["to_stage"]) for c in memory_changes(con, "t-orders")]
    con.close()
    assert log == [("observe", "shadow"), ("shadow", "canary"), ("canary", "primary")]
    # What an operator reads: `slimgate tasks` and /admin/tasks.
    con = connect(cfg.store.path)
    [row] = task_rows(con)
    tracks = memory_tracks(con)
    con.close()
    assert row["answer_memory"] == {"stage": "primary", "step": 0, "answers": 20}
    assert memory_text(tracks["t-orders"], cfg, TaskRecord("t-orders", "orders", "json")) == \
        "primary, 20 answers"
    # Another tenant asking the very same thing never reaches this tenant's memory.
    [other] = await serve_chats(app, "sk-gw-test-2", [order(3)])
    assert other.headers["x-slimgate-backend"] == "teacher"
    assert "x-slimgate-task" not in other.headers


async def test_a_disagreeing_audit_withdraws_the_answer(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, policy=POLICY)
    add_task(cfg.store.path, "observe")
    app, book = _app(cfg), MemoryBook()
    await serve_chats(app, keys, [order(i) for i in range(20)] * 2)
    tick(cfg, book)
    _force_primary(cfg)
    [served] = await serve_chats(app, keys, [order(5)])
    assert served.headers["x-slimgate-backend"] == "student"
    [rid] = [r["request_id"] for r in db_rows(cfg, "SELECT request_id FROM exchanges "
                                                    "WHERE student_version = 0")]
    con = connect(cfg.store.path)
    con.execute("INSERT INTO comparisons (created_at, task, version, mode, request_id, score, "
                "agree, valid, detail) VALUES (?, 't-orders', 0, 'audit', ?, 0, 0, 1, 'differs')",
                (time.time(), rid))
    con.close()
    tick(cfg, book)
    [after, kept] = await serve_chats(app, keys, [order(5), order(6)])
    assert after.headers["x-slimgate-backend"] == "teacher"  # withdrawn for good
    assert kept.headers["x-slimgate-backend"] == "student"
    await serve_chats(app, keys, [order(5)])  # the teacher answers it again the same way...
    tick(cfg, book)
    [still] = await serve_chats(app, keys, [order(5)])
    assert still.headers["x-slimgate-backend"] == "teacher"  # ...but it is not learnt again


@pytest.mark.parametrize("consistent", [True, False])
def test_only_a_consistent_teacher_moves_the_memory_on_either_store(
        tmp_path: Path, fresh_upstream: FakeUpstream, store_target: str,
        consistent: bool) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, policy=POLICY)
    con = connect(store_target)
    _add_task(con)
    now = time.time()
    for i in range(20):
        for j in range(2):  # an inconsistent teacher answers differently the second time
            _record(con, order(i), f'{{"n": {i}, "try": {0 if consistent else j}}}', now)
    book = MemoryBook()
    changes = memory_tick(con, cfg, book)
    t = memory_tracks(con)["t-orders"]
    n, agree = con.execute("SELECT COUNT(*), SUM(agree) FROM comparisons WHERE version = 0 "
                           "AND mode = 'replay'").fetchone()
    if consistent:
        assert (t.stage, t.entries, n, agree) == ("shadow", 20, 20, 20), changes
    else:
        assert changes == []
        assert (t.stage, t.entries, n, agree) == ("observe", 0, 20, 0)  # every key withdrawn
    # A worker started afresh reads the same memory back and adds nothing twice.
    assert memory_tick(con, cfg, MemoryBook()) == []
    assert con.execute("SELECT COUNT(*) FROM memory_entries").fetchone()[0] == (
        20 if consistent else 40)
    con.close()


def _add_task(con: Any) -> None:
    info = orjson.dumps({"tenant": TEST_TENANT}).decode()
    con.execute("INSERT INTO tasks (id, label, kind, stage, explicit, info, created_at, "
                "updated_at) VALUES ('t-orders', 'orders', 'json', 'observe', 0, ?, ?, ?)",
                (info, time.time(), time.time()))


@pytest.mark.parametrize("labels", [True, False])
def test_short_answers_are_remembered_only_as_a_label_set(
        tmp_path: Path, fresh_upstream: FakeUpstream, labels: bool) -> None:
    # FreshQA-like: each question its own short answer (a fact the request does not hold).
    cfg = gateway_config(tmp_path, fresh_upstream, policy=POLICY)
    add_task(cfg.store.path, "observe", kind="label")
    con = connect(cfg.store.path)
    for i in range(40):
        for _ in range(2):
            _record(con, order(i), ("positive", "negative")[i % 2] if labels else f"fact {i}",
                    time.time())
    changes = memory_tick(con, cfg, MemoryBook())
    stage = memory_tracks(con)["t-orders"].stage
    con.close()
    assert stage == ("shadow" if labels else "observe"), changes


def test_forms_label_set() -> None:
    from policies.memory import forms_label_set

    assert forms_label_set([12, 10, 3])  # three intents
    assert not forms_label_set([1] * 30)  # each request its own answer
    assert not forms_label_set([5, 5])  # too few requests to tell
    assert not forms_label_set([2] * 5 + [1] * 25)


@pytest.mark.parametrize("kind", ["text"])
def test_free_text_rows_are_never_learnt(tmp_path: Path, fresh_upstream: FakeUpstream,
                                         kind: str) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, policy=POLICY)
    add_task(cfg.store.path, "observe", kind=kind)
    con = connect(cfg.store.path)
    for i in range(20):
        for _ in range(3):
            _record(con, order(i), '{"same": true}', time.time())
    memory_tick(con, cfg, MemoryBook())
    assert memory_tracks(con) == {}
    assert con.execute("SELECT COUNT(*) FROM memory_entries").fetchone()[0] == 0
    con.close()


def _record(con: Any, body: dict[str, Any], content: str, at: float) -> None:
    resp = {"choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]}
    con.execute(
        "INSERT INTO exchanges (request_id, created_at, key_id, endpoint, model, backend, task, "
        "stream, request, response, status) VALUES (?, ?, ?, 'chat/completions', 'gpt-test', "
        "'teacher', 't-orders', 0, ?, ?, 200)",
        (f"r{time.perf_counter_ns()}", at, TEST_TENANT, orjson.dumps(body).decode(),
         orjson.dumps(resp).decode()))


def db_rows(cfg: Config, sql: str) -> list[Any]:
    con = connect(cfg.store.path)
    try:
        return list(con.execute(sql))
    finally:
        con.close()


def _force_primary(cfg: Config) -> None:
    con = connect(cfg.store.path)
    con.execute("UPDATE memory_tracks SET stage = 'primary', step = 0")
    con.close()


def _app(cfg: Config) -> Any:
    from gateway.app import create_app

    return create_app(cfg)
