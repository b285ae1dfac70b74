"""The synthetic agent workload: deterministic, realistic, and answers derivable from inputs."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.offline.workload import (
    GENERIC_SYSTEM,
    KINDS,
    ORDER_SCHEMA,
    WorkItem,
    _reply,
    generate,
    to_traces,
)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
PHONE = re.compile(r"\+?\(?\d{2,3}\)?[ -]\d{3,4}[ -]?\d{3,6}")


@pytest.fixture(scope="module")
def items() -> list[WorkItem]:
    return generate(600, seed=5)


def _last_user(item: WorkItem) -> str:
    return [m for m in item.request["messages"] if m["role"] == "user"][-1]["content"]


def _of(items: list[WorkItem], task: str) -> list[WorkItem]:
    return [i for i in items if i.task == task]


def test_same_seed_same_workload_and_other_seed_differs() -> None:
    a, b, c = generate(40, seed=1), generate(40, seed=1), generate(40, seed=2)
    assert [(i.task, i.request, i.answer) for i in a] == [(i.task, i.request, i.answer) for i in b]
    assert [i.request for i in a] != [i.request for i in c]


def test_all_six_kinds_in_near_equal_shares(items: list[WorkItem]) -> None:
    counts = Counter(i.task for i in items)
    assert set(counts) == set(KINDS) and len(KINDS) == 6
    assert max(counts.values()) - min(counts.values()) <= 1
    assert len({json.dumps(i.request, sort_keys=True) for i in items}) > 0.95 * len(items)
    assert all("model" not in i.request for i in items)


def test_travel_tool_calls_copy_the_users_words(items: list[WorkItem]) -> None:
    travel = _of(items, "travel_tools")
    parallel = multi_turn = 0
    for item in travel:
        tool_names = {t["function"]["name"] for t in item.request["tools"]}
        calls = item.answer["tool_calls"]
        parallel += len(calls) > 1
        multi_turn += sum(m["role"] == "user" for m in item.request["messages"]) > 1
        text = _last_user(item)
        for call in calls:
            assert call["function"]["name"] in tool_names
            for value in json.loads(call["function"]["arguments"]).values():
                assert str(value) in text
    assert parallel > 0 and multi_turn > 0


def test_order_extraction_matches_its_schema_and_the_email(items: list[WorkItem]) -> None:
    schema = ORDER_SCHEMA["schema"]
    assert _of(items, "order_extract"), "the workload has order extraction items"
    for item in _of(items, "order_extract"):
        assert item.request["response_format"]["json_schema"]["name"] == "order_issue"
        answer = json.loads(item.answer["content"])
        assert list(answer) == schema["required"]
        assert answer["issue"] in schema["properties"]["issue"]["enum"]
        assert isinstance(answer["quantity"], int)
        mail = _last_user(item)
        for key in ("customer_name", "order_id", "product"):
            assert answer[key] in mail


def test_labels_and_routes_come_from_fixed_sets(items: list[WorkItem]) -> None:
    assert {i.answer["content"] for i in _of(items, "ticket_triage")} == {
        "billing", "technical", "account", "shipping", "other"}
    assert {i.answer["content"] for i in _of(items, "sentiment")} == {
        "positive", "negative", "neutral"}
    intents = set()
    for item in _of(items, "intent_router"):
        assert item.request["response_format"] == {"type": "json_object"}
        routed = json.loads(item.answer["content"])
        assert set(routed) == {"intent", "slots"}
        intents.add(routed["intent"])
        for value in routed["slots"].values():
            assert str(value) in _last_user(item)
    assert len(intents) >= 6


def test_replies_are_60_to_120_words_and_never_the_same(items: list[WorkItem]) -> None:
    replies = [i.answer["content"] for i in _of(items, "reply_writer")]
    assert all(60 <= len(r.split()) <= 120 for r in replies)
    assert len(set(replies)) == len(replies)
    import random

    rng = random.Random(0)
    same_input = {_reply(rng, "Maria", "Acme Outdoor", "yoga mat") for _ in range(20)}
    assert len(same_input) == 20


def test_some_inputs_carry_pii(items: list[WorkItem]) -> None:
    texts = [m["content"] for i in items for m in i.request["messages"]
             if m["role"] == "user"]
    assert sum(bool(EMAIL.search(t)) for t in texts) > 30
    assert sum(bool(PHONE.search(t)) for t in texts) > 20


def test_generic_kinds_share_the_generic_system_prompt() -> None:
    items = generate(60, seed=3, generic=["ticket_triage", "sentiment"])
    for item in items:
        system = item.request["messages"][0]["content"]
        assert (system == GENERIC_SYSTEM) == (item.task in ("ticket_triage", "sentiment"))
    with pytest.raises(ValueError, match="cannot use the generic prompt"):
        generate(5, generic=["travel_tools"])
    with pytest.raises(ValueError, match="Unknown workload kinds"):
        generate(5, kinds=["poetry"])


def test_traces_are_openai_chat_completions(items: list[WorkItem]) -> None:
    traces: Iterator[dict] = to_traces(items[:50], model="gpt-test")
    for item, line in zip(items[:50], traces, strict=True):
        json.dumps(line)  # a JSONL line
        assert line["request"]["model"] == "gpt-test"
        assert line["request"]["messages"] == item.request["messages"]
        resp = line["response"]
        assert resp["object"] == "chat.completion" and resp["model"] == "gpt-test"
        choice = resp["choices"][0]
        assert choice["message"] == item.answer
        assert choice["finish_reason"] == ("tool_calls" if item.answer.get("tool_calls")
                                           else "stop")
        usage = resp["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_two_teacher_replies_to_one_message_are_far_apart_for_embeddings(embedder: Any) -> None:
    """A tiny student cannot match the open-ended task: even the teacher's own two answers to
    the same message are far apart (MiniLM cosine)."""
    import random

    import numpy as np

    rng = random.Random(7)
    pairs = [(_reply(rng, "Omar", "Pixel & Co", "webcam"),
              _reply(rng, "Omar", "Pixel & Co", "webcam")) for _ in range(30)]
    a = embedder.encode([p[0] for p in pairs])
    b = embedder.encode([p[1] for p in pairs])
    cos = (a * b).sum(axis=1)
    assert float(np.mean(cos)) < 0.7 and float(np.median(cos)) < 0.75
