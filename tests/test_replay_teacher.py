"""The replay teacher through the official openai SDK, and traces exported from a store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from distill.curate import request_key as curate_request_key
from gateway.fingerprint import request_key
from gateway.offline.local import free_port
from gateway.offline.replay_teacher import ReplayTeacher
from gateway.offline.traces import TraceError, export_traces, read_traces
from gateway.store.db import connect
from tests.served import START_TIMEOUT_S

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "label", "schema": {
    "type": "object", "properties": {"label": {"type": "string"}}}}}


def _completion(message: dict[str, Any], finish: str = "stop", usage: bool = True) -> dict:
    resp: dict[str, Any] = {
        "id": "chatcmpl-rec", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]}
    if usage:
        resp["usage"] = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    return resp


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


CALL = {"id": "call_abc", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Lisbon, Portugal"}'}}
TRACES = [
    {"request": {"model": "gpt-4o-mini", "messages": _user("Say hello.")},
     "response": _completion({"role": "assistant",
                              "content": "Hello there!  How can I help you today?\n"})},
    {"request": {"model": "gpt-4o-mini", "messages": _user("Weather in Lisbon?"),
                 "tools": TOOLS},
     "response": _completion({"role": "assistant", "content": None, "tool_calls": [CALL]},
                             "tool_calls")},
    {"request": {"model": "gpt-4o-mini", "messages": _user("Label: refund please"),
                 "response_format": JSON_FORMAT},
     "response": _completion({"role": "assistant", "content": '{"label": "refund"}'},
                             usage=False)},
]


def _write(path: Path, traces: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in traces))
    return path


@pytest.fixture
def teacher(tmp_path: Path) -> Iterator[ReplayTeacher]:
    with ReplayTeacher.from_jsonl(_write(tmp_path / "t.jsonl", TRACES), latency_ms=0,
                                  ms_per_token=0) as t:
        yield t


@pytest.fixture
def client(teacher: ReplayTeacher) -> openai.OpenAI:
    return openai.OpenAI(base_url=teacher.base_url, api_key="unused", max_retries=0)


def test_recorded_answers_come_back(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=_user("Say hello."))
    assert r.choices[0].message.content == "Hello there!  How can I help you today?\n"
    assert r.usage is not None and r.usage.completion_tokens == 7
    # the model name and sampling settings are not part of what was asked
    r = client.chat.completions.create(model="another-name", messages=_user("Weather in Lisbon?"),
                                       tools=TOOLS, temperature=0.3)  # type: ignore[arg-type]
    (call,) = r.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Lisbon, Portugal"}  # type: ignore[union-attr]
    assert r.choices[0].finish_reason == "tool_calls"
    r = client.chat.completions.create(model="gpt-4o-mini", messages=_user("Label: refund please"),
                                       response_format=JSON_FORMAT)  # type: ignore[arg-type]
    assert json.loads(r.choices[0].message.content or "") == {"label": "refund"}
    assert r.usage is not None and r.usage.completion_tokens >= 1  # estimated: none recorded


@pytest.mark.parametrize("trace", TRACES, ids=["text", "tool_call", "json"])
def test_streaming_assembles_to_the_recorded_message(client: openai.OpenAI, trace: dict) -> None:
    req = trace["request"]
    stream = client.chat.completions.create(**req, stream=True,
                                            stream_options={"include_usage": True})
    content, args, names, finish, usage = "", {}, {}, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")  # type: ignore[union-attr]
                if tc.function and tc.function.name:
                    names[tc.index] = tc.function.name
            finish = choice.finish_reason or finish
    recorded = trace["response"]["choices"][0]
    assert content == (recorded["message"]["content"] or "")
    assert [args[i] for i in sorted(args)] == [c["function"]["arguments"]
                                             for c in recorded["message"].get("tool_calls", [])]
    assert list(names.values()) == [c["function"]["name"]
                                    for c in recorded["message"].get("tool_calls", [])]
    assert finish == recorded["finish_reason"]
    assert usage is not None and usage.total_tokens > 0


def test_unknown_request_is_a_clear_400(client: openai.OpenAI, teacher: ReplayTeacher) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=_user("Say hello!"))
    assert err.value.status_code == 400
    assert err.value.code == "no_recorded_answer"
    assert "no recorded answer" in err.value.message and "3 recorded requests" in err.value.message
    assert teacher.misses == 1


def test_models_listed_from_the_records(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]


def test_repeated_requests_cycle_through_their_answers(tmp_path: Path) -> None:
    first = _completion({"role": "assistant", "content": "first"})
    second = _completion({"role": "assistant", "content": "second"})
    path = _write(tmp_path / "t.jsonl", [{"request": TRACES[0]["request"], "response": first},
                                         {"request": TRACES[0]["request"], "response": second}])
    with ReplayTeacher.from_jsonl(path, latency_ms=150, ms_per_token=10, jitter=0) as t:
        c = openai.OpenAI(base_url=t.base_url, api_key="unused", max_retries=0)
        a = c.chat.completions.create(model="m", messages=_user("Say hello."))
        b = c.chat.completions.create(model="m", messages=_user("Say hello."))
        c3 = c.chat.completions.create(model="m", messages=_user("Say hello."))
    assert [x.choices[0].message.content for x in (a, b, c3)] == ["first", "second", "first"]
    assert a.id != c3.id


def test_bad_trace_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(TRACES[0]) + "\n\n" + '{"request": {"messages": []}}\n')
    with pytest.raises(TraceError, match=r"bad.jsonl:3: 'response' must be a chat.completion"):
        ReplayTeacher.from_jsonl(path)
    with pytest.raises(TraceError, match="cannot read traces"):
        ReplayTeacher.from_jsonl(tmp_path / "missing.jsonl")


def test_key_is_the_one_curation_uses() -> None:
    for t in TRACES:
        assert request_key(t["request"]) == curate_request_key(t["request"])


def _insert(con: Any, trace: dict[str, Any], *, status: int = 200, backend: str = "teacher",
            task: str | None = "greet", model: str = "gpt-4o-mini") -> None:
    con.execute(
        "INSERT INTO exchanges (request_id, created_at, endpoint, model, backend, task, stream, "
        "request, response, status) VALUES ('r', ?, 'chat/completions', ?, ?, ?, 0, ?, ?, ?)",
        (time.time(), model, backend, task, json.dumps(trace["request"], indent=2),
         orjson.dumps(trace["response"]).decode(), status))


def test_exported_store_traffic_replays(tmp_path: Path) -> None:
    db = tmp_path / "slimgate.db"
    con = connect(str(db))
    _insert(con, TRACES[0])
    _insert(con, TRACES[1], task="weather")
    _insert(con, TRACES[2], status=502)
    _insert(con, TRACES[2], backend="student:greet:1")
    _insert(con, TRACES[2], model="other")
    con.close()
    out = tmp_path / "mine.jsonl"
    assert export_traces(db, out) == 3
    assert export_traces(db, tmp_path / "greet.jsonl", task="greet", model="gpt-4o-mini") == 1
    assert [t.request["messages"] for t in read_traces(tmp_path / "greet.jsonl")] \
        == [TRACES[0]["request"]["messages"]]
    with ReplayTeacher.from_jsonl(out, latency_ms=0, ms_per_token=0) as t:
        c = openai.OpenAI(base_url=t.base_url, api_key="unused", max_retries=0)
        r = c.chat.completions.create(model="gpt-4o-mini", messages=_user("Weather in Lisbon?"),
                                      tools=TOOLS)  # type: ignore[arg-type]
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"  # type: ignore[index,union-attr]
    with pytest.raises(TraceError, match="does not exist"):
        export_traces(tmp_path / "nope.db", out)


def test_command_line_serves(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", TRACES)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "replay-teacher", "--from", str(path),
         "--port", str(port),
         "--latency-ms", "0", "--ms-per-token", "0"],
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S  # a bound on a hang, not a measure
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1) as r:
                    assert json.load(r)["data"][0]["id"] == "gpt-4o-mini"
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "3 recorded answers to 3 requests" in err
