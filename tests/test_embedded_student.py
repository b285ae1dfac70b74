"""The in-process student backend over a real saved student: OpenAI answers, concurrent
requests generated as one batch, and streams that carry the same message."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from distill.loading import load_student
from gateway.streams import assemble_chat
from gateway.upstream.embedded_student import EmbeddedStudentBackend
from tests.helpers_students import TEN_CITIES, check_request, weather_request

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tool_body(city: str) -> dict[str, Any]:
    return {"model": "triage", **weather_request(city)}


def json_body(city: str) -> dict[str, Any]:
    return {"model": "triage", **check_request(city)}


@pytest.fixture(scope="module")
def student_dir(fixed_answer_student: Path) -> Path:
    return fixed_answer_student


async def test_complete_returns_a_chat_completion(student_dir: Path) -> None:
    backend = EmbeddedStudentBackend("triage-v1", str(student_dir), load_model=load_student)
    resp = await backend.complete("chat/completions", tool_body("Lima"))
    assert resp["object"] == "chat.completion" and resp["id"].startswith("chatcmpl-")
    assert resp["model"] == "triage"
    [choice] = resp["choices"]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    usage = resp["usage"]
    assert usage["prompt_tokens"] > 20 and 0 < usage["completion_tokens"] < 64
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    resp = await backend.complete("chat/completions", {**json_body("Oslo"), "n": 2})
    assert [c["index"] for c in resp["choices"]] == [0, 1]
    for c in resp["choices"]:
        assert c["finish_reason"] == "stop" and json.loads(c["message"]["content"]) == {"ok": True}
    await backend.aclose()


async def test_concurrent_requests_are_generated_as_one_batch(student_dir: Path) -> None:
    backend = EmbeddedStudentBackend("triage-v1", str(student_dir), load_model=load_student,
                                     max_batch=8)
    await backend.load()
    student = backend._student
    batches: list[int] = []
    generate = student.generate

    def recording(requests: list[dict[str, Any]], **kw: Any) -> Any:
        batches.append(len(requests))
        return generate(requests, **kw)

    student.generate = recording
    bodies = [tool_body(c) if i % 2 else json_body(c) for i, c in enumerate(TEN_CITIES[:6])]
    answers = await asyncio.gather(*(backend.complete("chat/completions", b) for b in bodies))
    assert batches == [6]
    for i, resp in enumerate(answers):  # each request got its own answer back
        assert resp["choices"][0]["finish_reason"] == ("tool_calls" if i % 2 else "stop")

    bodies = [json_body(c) for c in TEN_CITIES]  # 10 requests, batches of at most 8
    await asyncio.gather(*(backend.complete("chat/completions", b) for b in bodies))
    assert batches[1:] == [8, 2]


def _without_ids(message: dict[str, Any]) -> dict[str, Any]:
    calls = [{**c, "id": None} for c in message.get("tool_calls") or []]
    return {**message, "tool_calls": calls} if calls else message


async def test_stream_assembles_to_the_same_message(student_dir: Path) -> None:
    backend = EmbeddedStudentBackend("triage-v1", str(student_dir), load_model=load_student)
    for body in (tool_body("Rome"), json_body("Rome")):
        whole = await backend.complete("chat/completions", body)
        chunks = [c async for c in backend.stream("chat/completions", {**body, "stream": True})]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert len({c["id"] for c in chunks}) == 1
        streamed = assemble_chat(chunks)
        got, want = streamed["choices"][0], whole["choices"][0]
        assert got["finish_reason"] == want["finish_reason"]
        assert _without_ids(got["message"]) == _without_ids(want["message"])
        assert all(c["id"].startswith("call_") for c in got["message"].get("tool_calls", []))
        assert streamed["usage"] == whole["usage"]


async def test_stream_keeps_content_beside_tool_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    from distill.student import Generation, Student

    message = {"role": "assistant", "content": "Checking the weather first.", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}

    class Fixed:
        def generate(self, requests: list[dict[str, Any]], **kw: Any) -> list[Generation]:
            return [Generation(message, "tool_calls", 10, 20, "") for _ in requests]

    monkeypatch.setattr(Student, "load", staticmethod(lambda path: Fixed()))
    backend = EmbeddedStudentBackend("triage-v1", "unused", load_model=load_student)
    chunks = [c async for c in backend.stream("chat/completions", tool_body("Oslo"))]
    assert assemble_chat(chunks)["choices"][0]["message"] == message
