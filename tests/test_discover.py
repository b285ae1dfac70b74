"""Task discovery on our demo workload, including two tasks behind one generic prompt."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np
import pytest

from distill.discover import Discovery, discover
from gateway.offline.workload import WorkItem, generate
from gateway.task_assign import TaskAssigner
from gateway.task_ids import is_task_id
from tests.helpers import rows_of

GENERIC = ["ticket_triage", "sentiment"]  # both behind "You are a helpful assistant."
MIN = 15
EXPECTED_KIND = {"travel_tools": "tool_call", "order_extract": "json", "ticket_triage": "label",
                 "intent_router": "json", "sentiment": "label", "reply_writer": "text"}


def by_seq(d: Discovery) -> dict[int, str]:
    return {seq: task for task, seq in d.assignments}


@pytest.fixture(scope="module")
def workload() -> list[WorkItem]:
    return generate(240, seed=21, generic=GENERIC)


@pytest.fixture(scope="module")
def found(workload: list[WorkItem], embedder: Any) -> Discovery:
    return discover(rows_of(workload), embedder=embedder, min_task_examples=MIN)


def truth_of(d: Discovery, items: list[WorkItem], first_seq: int = 1) -> dict[str, str]:
    """Discovered task id -> the ground-truth task most of its rows belong to."""
    votes: dict[str, Counter[str]] = {}
    for seq, task in by_seq(d).items():
        votes.setdefault(task, Counter())[items[seq - first_seq].task] += 1
    return {task: c.most_common(1)[0][0] for task, c in votes.items()}


def test_recovers_the_task_types(workload: list[WorkItem], found: Discovery) -> None:
    from sklearn.metrics import adjusted_rand_score

    assigned = by_seq(found)
    predicted = [assigned.get(i + 1, "none") for i in range(len(workload))]
    assert adjusted_rand_score([i.task for i in workload], predicted) >= 0.9
    assert len(found.tasks) == 6
    # the shared generic prompt was split (its templates answer with disjoint label sets);
    # the four brand prompts, a name apart, were merged
    assert [g["parts"] for g in found.report["groups"] if g["split"]] == [2]
    assert len(found.report["merged"]) == 1 and len(found.report["merged"][0]) == 4
    assert found.report["pending"] == []


def test_task_records_describe_their_tasks(workload: list[WorkItem], found: Discovery) -> None:
    truth = truth_of(found, workload)
    assert sorted(truth.values()) == sorted(EXPECTED_KIND)
    for task in found.tasks:
        name = truth[task.id]
        assert is_task_id(task.id) and task.id.startswith("t-") and not task.explicit
        assert task.kind == EXPECTED_KIND[name], name
        info = task.info
        assert info["count"] == sum(1 for t in by_seq(found).values() if t == task.id)
        assert 0 < info["prompt_tokens_p50"] <= info["prompt_tokens_p99"]
        assert info["answer_tokens_p99"] > 0 and sum(info["kinds"].values()) == info["count"]
        centroid = np.asarray(info["centroid"])
        assert centroid.shape == (768,) and abs(np.linalg.norm(centroid) - 1) < 1e-3
    labels = {truth[t.id]: t.label for t in found.tasks}
    assert labels["travel_tools"] == "tools: book_hotel, get_weather, search_flights"
    assert labels["order_extract"] == "json: order_issue"
    assert "ticket" in labels["ticket_triage"] and "review" in labels["sentiment"]
    assert len(set(labels.values())) == 6


async def test_new_requests_go_to_the_right_task(found: Discovery, workload: list[WorkItem],
                                                 embedder: Any) -> None:
    truth = truth_of(found, workload)
    assigner = TaskAssigner.from_tasks(found.tasks, embedder=lambda: embedder)
    hows: Counter[str] = Counter()
    right = 0
    fresh = generate(60, seed=77, generic=GENERIC)
    for item in fresh:
        a = assigner.assign(item.request)
        if a.task is None:
            a = await assigner.assign_by_centroid(item.request)
        hows[a.how] += 1
        right += a.task is not None and truth[a.task] == item.task
    assert right == len(fresh)
    assert hows["template"] >= 15 and hows["fingerprint"] >= 35  # generic ones: by template


def test_explicit_tags_win(workload: list[WorkItem], embedder: Any) -> None:
    rows = rows_of(workload[:120])
    for row in rows[:30]:  # tagged in the body: the gateway records the tag as the task
        row["request"] = {**row["request"], "metadata": {"task": "support.v2"}}
        row["task"] = "support.v2"
    for row in rows[30:45]:  # tagged by header: the gateway recorded it in the task column
        row["task"] = "from-header"
    d = discover(rows, embedder=embedder, min_task_examples=5)
    tasks = {t.id: t for t in d.tasks}
    assert tasks["support.v2"].explicit and tasks["support.v2"].label == "support.v2"
    assert tasks["from-header"].explicit and tasks["from-header"].info["count"] == 15
    assigned = by_seq(d)
    assert all(r["seq"] not in assigned for r in rows[:45])  # already right: not rewritten
    rest = [assigned[r["seq"]] for r in rows[45:] if r["seq"] in assigned]
    assert len(rest) >= 70 and not any(tasks[t].explicit for t in rest)


def test_ids_survive_rediscovery(workload: list[WorkItem], found: Discovery,
                                 embedder: Any) -> None:
    rows = rows_of(workload)
    for row in rows:  # the gateway has since recorded the discovered ids
        row["task"] = by_seq(found)[row["seq"]]
    more = generate(120, seed=22, generic=GENERIC)
    # an operator renamed the tasks and policies moved them on: both must stay
    existing = [dataclasses.replace(t, label=f"named-{i}", stage="shadow")
                for i, t in enumerate(found.tasks)]
    again = discover(rows + rows_of(more, first_seq=1000), existing=existing,
                     embedder=embedder, min_task_examples=MIN)
    assert {t.id for t in again.tasks} == {t.id for t in found.tasks}
    before = {t.id: t for t in existing}
    for t in again.tasks:
        assert (t.label, t.stage, t.explicit) == (before[t.id].label, "shadow", False)
        assert t.info["count"] > before[t.id].info["count"]
    assert {seq for _, seq in again.assignments} == {1000 + i for i in range(len(more))}
    first = truth_of(found, workload)
    assert all(first[task] == more[seq - 1000].task for task, seq in again.assignments)


def test_without_an_embedder_the_tasks_are_the_same(workload: list[WorkItem],
                                                      found: Discovery) -> None:
    d = discover(rows_of(workload), min_task_examples=MIN)
    assert all("centroid" not in t.info for t in d.tasks)
    assert sorted(d.assignments) == sorted(found.assignments) and d.report["pending"] == []


@pytest.mark.parametrize(("answer", "request_", "kind"), [
    ({"content": None, "tool_calls": [{"function": {"name": "f"}}]}, None, "tool_call"),
    ({"content": "not json at all"}, {"response_format": {"type": "json_object"}}, "json"),
    ({"content": ' [1, {"a": 2}] '}, None, "json"),
    ({"content": "billing"}, None, "label"),
    ({"content": "Needs a human agent"}, None, "label"),
    ({"content": "one two three four five six"}, None, "text"),
    ({"content": "billing\ntechnical"}, None, "text"),
    ({"content": "{not json"}, None, "label"),
    ({"content": ""}, None, "text"),
])
def test_output_kind(answer: dict[str, Any], request_: dict[str, Any] | None, kind: str) -> None:
    from policies.output_kinds import output_kind

    assert output_kind(answer, request_) == kind


def test_task_kind_is_the_majority() -> None:
    from policies.output_kinds import task_kind

    assert task_kind(["label", "label", "text"]) == "label"
    assert task_kind(["json", "text"]) == "json"  # a tie goes to the more structured kind
    assert task_kind([]) == "text"
