"""Online task assignment: explicit tags, fingerprints, and the nearest centroid."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway import task_assign
from gateway.fingerprint import fingerprint
from gateway.offline.workload import GENERIC_SYSTEM, REPLY_SYSTEM, generate
from gateway.task_assign import TaskAssigner, explicit_task


@dataclass
class Task:
    id: str
    info: dict[str, Any] = field(default_factory=dict)


def _body(system: str = "You sort tickets.", user: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": system},
                         {"role": "user", "content": user}], **extra}


def test_header_wins_then_metadata() -> None:
    body = _body(metadata={"task": "from-body"})
    assert explicit_task(body, "from-header") == "from-header"
    assert explicit_task(body, None) == "from-body"
    assert explicit_task(_body(), None) is None
    a = TaskAssigner.from_tasks([]).assign(body, None)
    assert (a.task, a.how) == ("from-body", "explicit")


@pytest.mark.parametrize("bad", ["", "-leading-dash", "has space", "x" * 65, "slash/y", "é"])
def test_invalid_tags_are_rejected_with_a_clear_message(bad: str) -> None:
    assigner = TaskAssigner.from_tasks([])
    with pytest.raises(ValueError, match="is not a valid task name"):
        assigner.assign(_body(), bad)
    with pytest.raises(ValueError, match="metadata.task"):
        assigner.assign(_body(metadata={"task": bad}), None)
    with pytest.raises(ValueError, match="must be a string"):
        assigner.assign(_body(metadata={"task": 7}), None)


def test_fingerprint_lookup() -> None:
    known, shared = _body("You sort tickets."), _body(GENERIC_SYSTEM)
    assigner = TaskAssigner.from_tasks([
        Task("triage", {"fingerprints": [fingerprint(known)]}),
        Task("a", {"fingerprints": [fingerprint(shared)]}),
        Task("b", {"fingerprints": [fingerprint(shared)]}),
        Task("bare"),
    ])
    a = assigner.assign(_body("You sort tickets.", "my invoice is wrong"))
    assert (a.task, a.how) == ("triage", "fingerprint")
    assert assigner.assign(_body(GENERIC_SYSTEM, "hi")).how == "none"  # shared: needs content
    assert assigner.assign(_body("Something else entirely.")).task is None


async def test_centroid_path_is_off_without_the_distill_extra(monkeypatch: Any) -> None:
    def no_embedder() -> Any:
        raise AssertionError("must not load an embedder")

    monkeypatch.setattr(task_assign, "embeddings_available", lambda: False)
    assigner = TaskAssigner.from_tasks(
        [Task("t", {"signature": "|", "centroid": [1.0] * 768})], embedder=no_embedder)
    assert (await assigner.assign_by_centroid(_body())).how == "none"
    assert (await TaskAssigner.from_tasks([]).assign_by_centroid(_body())).how == "none"


def test_importing_the_request_path_stays_light() -> None:
    code = ("import sys, gateway.task_assign, gateway.fingerprint, policies.output_kinds; "
            "print(sorted(m for m in ('numpy', 'torch', 'sentence_transformers', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def discovered() -> list[Any]:
    """Tasks as discovery records them: triage and sentiment share the generic prompt."""
    from distill.discover import discover
    from tests.helpers import rows_of

    items = generate(150, seed=31, kinds=["ticket_triage", "sentiment", "reply_writer"],
                     generic=["ticket_triage", "sentiment"])
    found = discover(rows_of(items), min_task_examples=10)
    names = {}
    for task, seq in found.assignments:
        names.setdefault(task, items[seq - 1].task)
    return [Task(names[t.id], t.info) for t in found.tasks]


@pytest.fixture(scope="module")
def assigner(discovered: list[Any]) -> TaskAssigner:
    return TaskAssigner.from_tasks(discovered)


def test_a_template_picks_between_tasks_sharing_a_prompt(assigner: TaskAssigner) -> None:
    for item in generate(30, seed=32, kinds=["ticket_triage", "sentiment"],
                         generic=["ticket_triage", "sentiment"]):
        a = assigner.assign(item.request)
        assert (a.task, a.how) == (item.task, "template")


async def test_a_prompt_a_name_away_takes_its_task(assigner: TaskAssigner) -> None:
    item = generate(6, seed=33, kinds=["reply_writer"])[0]
    body = {**item.request, "messages": [
        {"role": "system", "content": REPLY_SYSTEM.format(brand="Sunrise Bakery")},
        *item.request["messages"][1:]]}
    assert assigner.assign(body).task is None  # a prompt never seen before
    a = await assigner.assign_by_centroid(body)
    assert (a.task, a.how) == ("reply_writer", "prompt")
    rewritten = {**body, "messages": [
        {"role": "system", "content": "Answer the customer kindly and sign as Sam."},
        *body["messages"][1:]]}
    assert (await assigner.assign_by_centroid(rewritten)).how == "none"  # another prompt


async def test_the_routing_table_fingerprints_a_request_once(
        assigner: TaskAssigner, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the request path a miss is searched with the key its lookup computed: a request's
    fingerprint (a hash of its prompt, tools and format) is computed once, miss or hit."""
    from gateway.config import parse_config
    from gateway.embed import SharedEmbedder
    from gateway.routing import RoutingTable

    table = RoutingTable(parse_config({}), None, None, SharedEmbedder())  # type: ignore[arg-type]
    table._assigner, table.any_serving = assigner, True  # as a refresh with a student in play
    calls: list[str] = []

    def counted(body: dict[str, Any]) -> str:
        calls.append(fingerprint(body))
        return calls[-1]

    monkeypatch.setattr(task_assign, "fingerprint", counted)
    item = generate(6, seed=33, kinds=["reply_writer"])[0]
    missed = {**item.request, "messages": [
        {"role": "system", "content": REPLY_SYSTEM.format(brand="Harbour Books")},
        *item.request["messages"][1:]]}
    a = await table.assign(missed, None, None)
    assert (a.task, a.how) == ("reply_writer", "prompt") and len(calls) == 1
    a = await table.assign(item.request, None, None)
    assert (a.task, a.how) == ("reply_writer", "fingerprint") and len(calls) == 2


async def test_unrelated_requests_get_no_task(assigner: TaskAssigner) -> None:
    unrelated = [
        _body(GENERIC_SYSTEM, "Write a haiku about autumn leaves."),
        _body(GENERIC_SYSTEM, "Translate to French: the weather is lovely today."),
        _body("You summarise news articles in three bullet points.",
              "Article: The council voted on Tuesday to add 40 km of bike lanes."),
        _body(GENERIC_SYSTEM, "My invoice is wrong", tools=[
            {"type": "function", "function": {"name": "refund", "parameters": {}}}]),
    ]
    results = await asyncio.gather(*(assigner.assign_by_centroid(b) for b in unrelated))
    assert [(a.task, a.how) for a in results] == [(None, "none")] * len(unrelated)


async def test_a_group_split_by_answer_shape_places_the_unmatched_by_content(
        embedder: Any) -> None:
    """Two tasks under one prompt told apart by their answers; a request carrying neither
    template goes to the task whose user content is nearest, as discovery places it."""
    from gateway.embed import normalise, request_vectors

    shared = "You help the support team."
    billing = [_body(shared, f"Refund request: I was charged twice for order {n}.")
               for n in range(5)]
    shipping = [_body(shared, f"Where is my parcel? Order {n} has not arrived.")
                for n in range(5)]
    tasks = []
    for name, reqs in (("refunds", billing), ("parcels", shipping)):
        centroid = normalise(request_vectors(embedder, reqs).mean(axis=0))
        tasks.append(Task(name, {"fingerprints": [fingerprint(reqs[0])], "split": "answer",
                                 "templates": [name], "centroid": centroid.tolist(),
                                 "count": 5}))
    assigner = TaskAssigner.from_tasks(tasks, embedder=lambda: embedder)
    body = _body(shared, "My package is lost, the courier never delivered it.")
    assert assigner.assign(body).how == "none"
    a = await assigner.assign_by_centroid(body)
    assert (a.task, a.how) == ("parcels", "centroid")
