"""The whole loop for real on a loopback teacher: record, discover, train, gate, serve, roll back.

Nothing is scripted inside slimgate: a replay teacher answers an agent workload of two task
types, the distill pipeline discovers them and trains tiny students on CPU, the gate moves
the learnable one (ticket triage) through shadow and canary to primary, keeps the open-ended
writer with the teacher, and rolls the triage student back once it starts breaking its
answers. The agent never receives an answer that breaks its request's contract.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from distill.loading import load_student
from distill.passes import run_distill
from distill.worker import apply_gates
from gateway.app import create_app
from gateway.config import parse_config
from gateway.offline.replay_teacher import ReplayTeacher
from gateway.offline.workload import generate, to_traces
from gateway.registry import Registry
from gateway.report import build_report, dumps, policy_numbers, render_html
from gateway.store.catalog import list_tasks
from gateway.store.db import connect
from gateway.store.stages import stage_changes
from gateway.upstream.embedded_student import EmbeddedStudentBackend
from policies.contract import check_contract

pytestmark = pytest.mark.slow


class Breakable:
    """The real embedded student, with a switch that makes it answer with nothing."""

    def __init__(self, inner: EmbeddedStudentBackend) -> None:
        self.inner, self.name, self.broken = inner, inner.name, False

    async def load(self) -> None:
        await self.inner.load()

    async def complete(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self.inner.complete(endpoint, body)  # type: ignore[arg-type]
        if self.broken:
            resp["choices"][0]["message"] = {"role": "assistant", "content": ""}
        return resp

    def stream(self, endpoint: str, body: dict[str, Any]) -> Any:
        return self.inner.stream(endpoint, body)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def teacher(tmp_path: Path):  # type: ignore[no-untyped-def]
    items = generate(600, seed=11, kinds=["ticket_triage", "reply_writer"])
    traces = tmp_path / "traces.jsonl"
    traces.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in to_traces(items)))
    with ReplayTeacher.from_jsonl(traces, latency_ms=0, ms_per_token=0) as t:
        yield t, items


def config(tmp_path: Path, teacher_url: str):  # type: ignore[no-untyped-def]
    return parse_config({
        "server": {"api_keys_env": "LOOP_TEST_KEYS"},
        "store": {"path": str(tmp_path / "loop.db")},
        "models": [{"name": "gpt-4o-mini", "base_url": teacher_url, "max_retries": 0,
                    "api_key_env": "LOOP_TEST_PROVIDER_KEY"}],
        "distill": {"students_dir": str(tmp_path / "students"), "min_examples": 60,
                    "heldout_percent": 20,
                    "candidates": [{"model": "scratch:tiny", "params": 2_000_000,
                                    "context": 1024}],
                    # Steps, not seconds, bound training here, so a busy machine makes
                    # the test slower, never different.
                    "training": {"time_budget_s": 600, "max_steps": 300, "batch_size": 16,
                                 "max_seq_len": 256}},
        "students": {"refresh_s": 0.2, "timeout_s": 20},
        "worker": {"embedded": False},
        "policy": {"min_agreement": 0.7, "confidence": 0.8, "min_heldout": 10, "min_live": 8,
                   "shadow_rate": 1.0, "canary_steps": [50], "canary_min_comparisons": 5,
                   "canary_min_seconds": 0, "audit_rate": 0.5, "primary_audit_rate": 0.5,
                   "rollback_min_comparisons": 5, "rollback_min_requests": 5,
                   "max_fallback_rate": 0.2},
    })


GATEWAY_KEY = "sk-loop-gateway-planted"
PROVIDER_KEY = "sk-loop-provider-planted"


async def test_the_loop_promotes_serves_and_rolls_back(
    tmp_path: Path, teacher: Any, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LOOP_TEST_KEYS", GATEWAY_KEY)
    monkeypatch.setenv("LOOP_TEST_PROVIDER_KEY", PROVIDER_KEY)
    replay, items = teacher
    cfg = config(tmp_path, replay.base_url)
    students: dict[tuple[str, int], Breakable] = {}

    def factory(task: str, version: int) -> Breakable:
        path = Registry(cfg.distill.students_dir).version_dir(task, version)
        students[(task, version)] = Breakable(EmbeddedStudentBackend(
            f"{task}-v{version}", str(path), load_model=load_student))
        return students[(task, version)]

    app = create_app(cfg, student_factory=factory)
    received: list[tuple[dict[str, Any], httpx.Response]] = []
    triage = [it for it in items if it.task == "ticket_triage"]
    writer = [it for it in items if it.task == "reply_writer"]

    async with app.router.lifespan_context(app):
        state = app.state.slimgate
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60,
                                     headers={"authorization": f"Bearer {GATEWAY_KEY}"}
                                     ) as client:

            async def send(batch: list[Any]) -> list[httpx.Response]:
                out = []
                for it in batch:
                    r = await client.post("/v1/chat/completions",
                                          json={"model": "gpt-4o-mini", **it.request})
                    assert r.status_code == 200, r.text
                    received.append((it.request, r))
                    out.append(r)
                await state.shadow.drain()
                await state.recorder.flush()
                return out

            async def gate() -> None:
                con = connect(cfg.store.path)
                try:
                    apply_gates(con, cfg, now=time.time())
                finally:
                    con.close()
                await state.routing.refresh()

            def stage_of(kind: str) -> tuple[str, str]:
                con = connect(cfg.store.path)
                try:
                    t = next(t for t in list_tasks(con) if t.kind == kind)
                    return t.id, t.stage
                finally:
                    con.close()

            # 1. Observe: the teacher answers everything; it is all recorded.
            await send(triage[:200] + writer[:80])
            outcomes = await asyncio.to_thread(run_distill, cfg, progress=False)
            by_kind = {o.label: o for o in outcomes}
            assert len(outcomes) == 2, by_kind
            triage_id, _ = stage_of("label")
            writer_id, _ = stage_of("text")
            # 2. The gate: the triage student passed its held-out set, the writer did not.
            await gate()
            assert stage_of("label")[1] == "shadow"
            assert stage_of("text")[1] == "observe"
            # 3. Shadow and canary on live traffic until the student is primary.
            live = iter(triage[200:])
            for _ in range(12):
                await send([next(live) for _ in range(12)])
                await gate()
                if stage_of("label")[1] == "primary":
                    break
            assert stage_of("label")[1] == "primary"
            served = await send([next(live) for _ in range(6)] + writer[80:83])
            assert [r.headers["x-slimgate-backend"] for r in served] == ["student"] * 6 + \
                ["teacher"] * 3
            assert {r.headers["x-slimgate-task"] for r in served[:6]} == {triage_id}
            # 4. The student starts failing: every broken answer is replaced by the teacher's
            #    inside the request, and the gate rolls the task back.
            for s in students.values():
                s.broken = True
            after = await send([next(live) for _ in range(8)])
            assert all(r.headers["x-slimgate-backend"] == "teacher" for r in after)
            await gate()
            assert stage_of("label")[1] == "observe"

    con = connect(cfg.store.path)
    log = stage_changes(con, triage_id)
    con.close()
    assert [c.to_stage for c in log] == ["shadow", "canary", "primary", "observe"]
    assert "fallback rate" in log[-1].reason
    for request, r in received:  # the agent never received a broken answer
        assert check_contract(request, r.json()["choices"][0]["message"]) is None
    # Planted keys reach none of: the store, the students (weights, tokenizers, training
    # metadata), the traces, the logs, the JSON and HTML reports.
    report = build_report(cfg.store.path, **policy_numbers(cfg))
    places = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    places["logs"] = caplog.text.encode()
    places["report.json"] = dumps(report)
    places["report.html"] = render_html(report).encode()
    assert len(places) > 6 and sum("/students/" in p for p in places) >= 3  # weights, meta
    for where, data in places.items():
        for secret in (GATEWAY_KEY, PROVIDER_KEY):
            assert secret.encode() not in data, f"{secret} found in {where}"
