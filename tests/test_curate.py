"""Curation (S2): what is dropped and why, a stable held-out split, scrubbed examples."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from distill.curate import curate, is_heldout, request_key
from gateway.privacy.scrub import ScrubConfig
from gateway.store import catalog
from gateway.store.db import connect

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"email": {"type": "string"}}}}}]


def _row(seq: int, user: str, *, content: str | None = "ok", status: int = 200,
         backend: str = "teacher", finish: str = "stop", **message: Any) -> dict[str, Any]:
    msg = {"role": "assistant", "content": content, **message}
    return {
        "seq": seq, "request_id": f"req-{seq}", "created_at": 0.0, "task": None,
        "status": status, "finish_reason": finish, "backend": backend,
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": user}]},
        "response": {"object": "chat.completion",
                     "choices": [{"index": 0, "message": msg, "finish_reason": finish}]},
    }


def test_drops_are_counted_by_reason() -> None:
    no_choices = _row(7, "seven")
    no_choices["response"]["choices"] = []
    rows = [
        _row(1, "one"),
        _row(2, "two", status=500),
        _row(3, "three", backend="student:ticket-triage:2"),
        _row(4, "four", finish="length"),
        _row(5, "five", content="I'm sorry, but I can't help with that."),
        _row(6, "six", content=None, refusal="I cannot do that."),
        no_choices,
        _row(8, "eight", content="  "),
        _row(9, "one", content="a different answer to the same request"),
        _row(10, "ten", finish="content_filter"),
        _row(11, "eleven", content=None, tool_calls=[{"id": "c1", "type": "function",
             "function": {"name": "lookup", "arguments": "{}"}}]),
    ]
    out = curate(rows, heldout_percent=10)
    assert out.dropped == {"error": 1, "not_teacher": 1, "truncated": 1, "refused": 3,
                           "no_answer": 1, "empty": 1, "duplicate": 1}
    kept = sorted(ex.seq for ex in out.train + out.heldout)
    assert kept == [1, 11]  # a tool call without text is a real answer


def test_split_is_by_request_hash_and_stable_as_data_grows() -> None:
    rows = [_row(i, f"question number {i}") for i in range(400)]
    first = curate(rows[:200], heldout_percent=20)
    later = curate(rows, heldout_percent=20)
    held_first = {ex.key for ex in first.heldout}
    assert 20 <= len(held_first) <= 60  # about 20% of 200
    assert held_first <= {ex.key for ex in later.heldout}  # held out stays held out
    assert {ex.key for ex in first.train} <= {ex.key for ex in later.train}
    for ex in later.heldout:
        assert is_heldout(ex.key, 20)
    # the same request always lands on the same side, whatever else arrives with it
    again = curate(list(reversed(rows)), heldout_percent=20)
    assert {ex.key for ex in again.heldout} == {ex.key for ex in later.heldout}
    assert later.data_hash() != first.data_hash()


def test_request_key_ignores_model_and_sampling_but_not_tools() -> None:
    base = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
    assert request_key(base) == request_key({**base, "model": "b", "temperature": 0.2})
    assert request_key(base) != request_key({**base, "tools": TOOLS})
    assert request_key(base) != request_key({**base, "response_format": {"type": "json_object"}})


def test_examples_are_scrubbed_consistently() -> None:
    row = _row(1, "My name is Ana Lima, mail ana@corp.io", content="Sent to ana@corp.io, Ana.")
    row["request"]["tools"] = TOOLS
    out = curate([row], heldout_percent=1)
    (ex,) = out.train + out.heldout
    assert ex.messages[0]["content"] == "My name is <PERSON_1>, mail <EMAIL_1>"
    assert ex.answer == {"role": "assistant", "content": "Sent to <EMAIL_1>, <PERSON_1>."}
    assert ex.tools == TOOLS  # schemas are not user data
    assert out.scrubbed == {"email": 2, "person": 2}
    assert row["request"]["messages"][0]["content"].endswith("ana@corp.io")  # input untouched
    only_email = curate([row], heldout_percent=1, scrub=ScrubConfig(kinds=frozenset({"email"})))
    (ex2,) = only_email.train + only_email.heldout
    assert ex2.messages[0]["content"] == "My name is Ana Lima, mail <EMAIL_1>"
    assert ex2.as_training()["answer"]["content"] == "Sent to <EMAIL_1>, Ana."


def test_curates_rows_read_from_the_store(tmp_path: Path) -> None:
    con = connect(str(tmp_path / "s.db"))
    rows = [_row(0, "call me at +1 (555) 010-4477"), _row(0, "x", status=429),
            _row(0, "y", backend="student:t:1")]
    for r in rows:
        con.execute(
            "INSERT INTO exchanges (request_id, created_at, endpoint, model, backend, stream, "
            "request, response, status, finish_reason) VALUES (?, ?, 'chat/completions', "
            "'gpt-4o-mini', ?, 0, ?, ?, ?, ?)",
            (r["request_id"], time.time(), r["backend"], orjson.dumps(r["request"]).decode(),
             orjson.dumps(r["response"]).decode(), r["status"], r["finish_reason"]),
        )
    out = curate(catalog.chat_exchanges(con), heldout_percent=10)
    con.close()
    assert out.dropped == {"error": 1, "not_teacher": 1}
    (ex,) = out.train + out.heldout
    assert ex.messages[0]["content"] == "call me at <PHONE_1>"
