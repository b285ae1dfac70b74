"""Request fingerprints: same task, same fingerprint; a different contract, a different one."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.fingerprint import (
    content_text,
    fingerprint,
    mask_variable,
    system_text,
    tool_names,
)
from gateway.offline.workload import ORDER_SCHEMA, TRAVEL_TOOLS, generate


@pytest.mark.parametrize(("text", "masked"), [
    ("Today is 2025-03-14.", "Today is <date>."),
    ("Due March 14, 2025 or 14 March", "Due <date> or <date>"),
    ("on 03/14/2025 at 10:30 am, or 5pm", "on <date> at <time>, or <time>"),
    ("Mail ana.b+x@mail.example.com now", "Mail <email> now"),
    ("See https://x.example.com/a?b=1 please", "See <url> please"),
    ("Session 550e8400-e29b-41d4-a716-446655440000", "Session <uuid>"),
    ("Order A12345 and trace deadbeef42", "Order <id> and trace <id>"),
    ('The user said "cancel it" and left', "The user said <quote> and left"),
    ("Budget 1,250.50 for 3 people, 15% off", "Budget <num> for <num> people, <num> off"),
    ("It's the user's   choice\n\nreally", "It's the user's choice really"),
])
def test_mask_variable(text: str, masked: str) -> None:
    assert mask_variable(text) == masked


def _req(system: str = "You are a triage bot.", user: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": system},
                         {"role": "user", "content": user}], **extra}


def test_user_content_and_variable_prompt_parts_do_not_change_the_fingerprint() -> None:
    a = _req("Today is 2025-01-02. Ticket #4411 from ana@x.io.", "My card was charged twice")
    b = _req("Today is 2026-11-30. Ticket #9 from bo@y.org.", "The app crashes on start")
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 16 and int(fingerprint(a), 16) >= 0


def test_a_different_contract_changes_the_fingerprint() -> None:
    base = _req(tools=TRAVEL_TOOLS)
    assert fingerprint(base) != fingerprint(_req("You are a billing bot.", tools=TRAVEL_TOOLS))
    assert fingerprint(base) != fingerprint(_req(tools=TRAVEL_TOOLS[:2]))
    assert fingerprint(base) != fingerprint(_req())
    assert fingerprint(base) == fingerprint(_req(tools=list(reversed(TRAVEL_TOOLS))))
    json_object = _req(response_format={"type": "json_object"})
    schema = _req(response_format={"type": "json_schema", "json_schema": ORDER_SCHEMA})
    assert len({fingerprint(_req()), fingerprint(json_object), fingerprint(schema)}) == 3


def test_schema_is_compared_canonically() -> None:
    reordered = {"schema": ORDER_SCHEMA["schema"], "strict": True, "name": "order_issue"}
    a = _req(response_format={"type": "json_schema", "json_schema": ORDER_SCHEMA})
    b = _req(response_format={"type": "json_schema", "json_schema": reordered})
    assert fingerprint(a) == fingerprint(b)
    changed = copy.deepcopy(ORDER_SCHEMA)
    changed["schema"]["properties"]["issue"]["enum"].append("other")
    c = _req(response_format={"type": "json_schema", "json_schema": changed})
    assert fingerprint(a) != fingerprint(c)


def test_odd_but_valid_bodies() -> None:
    parts = {"messages": [{"role": "developer", "content": [
        {"type": "text", "text": "You are a triage bot."}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image_url", "image_url": {"url": "x"}}]}]}
    assert system_text(parts) == "You are a triage bot."
    assert content_text(parts) == "hi"
    assert fingerprint({}) == fingerprint({"messages": "not a list"})
    assert tool_names({"tools": [{"type": "function"}], "functions": [{"name": "f"}]}) == ["f"]


def test_every_workload_task_has_its_own_fingerprint() -> None:
    items = generate(120, seed=4)
    by_task: dict[str, set[str]] = {}
    for item in items:
        by_task.setdefault(item.task, set()).add(fingerprint(item.request))
    for task, fps in by_task.items():
        # reply_writer's prompt names one of four brands; every other task has one prompt
        assert len(fps) == (4 if task == "reply_writer" else 1), task
    all_fps = [fp for fps in by_task.values() for fp in fps]
    assert len(all_fps) == len(set(all_fps))

