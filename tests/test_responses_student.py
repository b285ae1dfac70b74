"""The loop on Responses traffic: one task across both APIs, a student serving a Responses
request (whole or streamed), contract fallback inside the request, and shadowing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.offline.traces import export_traces
from gateway.report.data import build_report
from gateway.report.html import render_html
from tests.fake_upstream import FakeUpstream
from tests.helpers import JSON_BODY, SYSTEM, ScriptedStudent, app_with_student, sse_events

# The same task as JSON_BODY (a chat request), asked through the Responses API.
RESPONSES_BODY = {"model": "gpt-test", "instructions": SYSTEM, "input": "order 42",
                  "text": {"format": {"type": "json_object"}}}


async def _serve(app: Any, keys: str, calls: list[tuple[str, dict[str, Any]]]
                 ) -> list[httpx.Response]:
    out = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw",
                                     headers={"authorization": f"Bearer {keys}"}) as c:
            for path, body in calls:
                out.append(await c.post(path, json=body))
            state = app.state.slimgate
            await state.shadow.drain()
            await state.recorder.flush()
            app.state.rows = await state.store.exchanges()
            app.state.comparisons = [dict(r) for r in await (await state.store._db.execute(
                "SELECT * FROM comparisons")).fetchall()]
    return out


async def test_student_answers_a_responses_request_whole_and_streamed(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    student = ScriptedStudent()
    app, _ = await app_with_student(  # no audit: the teacher is unasked
        tmp_path, fresh_upstream, student, "primary", policy={"primary_audit_rate": 0.0})
    whole, streamed = await _serve(app, keys, [
        ("/v1/responses", RESPONSES_BODY), ("/v1/responses", {**RESPONSES_BODY, "stream": True})])
    assert whole.status_code == 200 and whole.headers["x-slimgate-backend"] == "student"
    assert whole.headers["x-slimgate-task"] == "t-orders"
    body = whole.json()
    assert body["object"] == "response" and body["model"] == "gpt-test"
    assert orjson.loads(body["output"][0]["content"][0]["text"]) == {"echo": "order 42"}
    evs = sse_events(streamed.content)
    assert streamed.headers["x-slimgate-backend"] == "student"
    assert evs[-1]["type"] == "response.completed"
    assert "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta") == \
        student.content
    assert fresh_upstream.requests == []  # the teacher was never asked
    assert [(r["api"], r["backend"], r["task"]) for r in app.state.rows] == \
        [("responses", "student", "t-orders")] * 2


async def test_broken_student_answer_falls_back_inside_the_request(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    student = ScriptedStudent(content="sorry, no JSON today")
    app, _ = await app_with_student(tmp_path, fresh_upstream, student, "primary")
    whole, streamed = await _serve(app, keys, [
        ("/v1/responses", RESPONSES_BODY), ("/v1/responses", {**RESPONSES_BODY, "stream": True})])
    assert whole.status_code == 200 and whole.headers["x-slimgate-backend"] == "teacher"
    assert orjson.loads(whole.json()["output"][0]["content"][0]["text"]) == {"echo": "order 42"}
    final = sse_events(streamed.content)[-1]["response"]
    assert orjson.loads(final["output"][0]["content"][0]["text"]) == {"echo": "order 42"}
    assert student.calls == 2 and len(fresh_upstream.requests) == 2
    assert all(r["fallback"] == "invalid_json" and r["backend"] == "teacher"
               for r in app.state.rows), app.state.rows


async def test_a_request_only_a_native_teacher_can_serve_never_goes_to_the_student(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    student = ScriptedStudent()
    native = {"name": "gpt-test", "provider": "openai", "base_url": fresh_upstream.base_url,
              "responses": "native", "max_retries": 0}
    app, _ = await app_with_student(tmp_path, fresh_upstream, student, "primary", models=[native])
    [r] = await _serve(app, keys, [("/v1/responses", {
        **RESPONSES_BODY, "tools": [{"type": "web_search"}]})])
    assert r.status_code == 200 and r.headers["x-slimgate-backend"] == "teacher"
    assert student.calls == 0
    assert fresh_upstream.requests[-1]["tools"] == [{"type": "web_search"}]


async def test_one_task_mixes_both_apis_and_responses_traffic_is_shadowed(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    student = ScriptedStudent()
    app, cfg = await app_with_student(tmp_path, fresh_upstream, student, "shadow",
                                      policy={"shadow_rate": 1.0})
    chat, resp = await _serve(app, keys, [("/v1/chat/completions", JSON_BODY),
                                          ("/v1/responses", RESPONSES_BODY)])
    assert chat.headers["x-slimgate-task"] == resp.headers["x-slimgate-task"] == "t-orders"
    assert resp.headers["x-slimgate-backend"] == "teacher"
    assert [r["api"] for r in app.state.rows] == ["chat/completions", "responses"]
    assert len(app.state.comparisons) == 2 and all(c["agree"] for c in app.state.comparisons)
    report = build_report(cfg.store.path)
    assert report["totals"]["requests"] == 2 and report["totals"]["responses_api"] == 1
    assert report["tasks"][0]["traffic"]["responses_api"] == 1
    assert "through /v1/responses" in render_html(report)  # the dashboard shows the split
    out = io.BytesIO()
    assert export_traces(cfg.store.path, out) == 2
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["api"] for line in lines] == ["chat/completions", "responses"]
    assert lines[1]["request"]["messages"] == JSON_BODY["messages"]  # the same task's shape
