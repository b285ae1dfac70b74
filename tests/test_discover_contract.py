"""What a task is: one instruction with one output contract, whatever the user texts are about.

The cases issue 12 names: many user templates under one specific prompt are one task; three
instructions in the user turn under a generic prompt, answered in three shapes, are three; a
prompt edited by a word or a date stays one task with the same id; and the gateway's online
assignment puts new requests where discovery puts them, on every workload.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from distill.discover import Discovery, discover

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import discovery_bench as bench  # noqa: E402

NAMES = ["Ana", "Bo", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
PRODUCTS = ["kettle", "laptop", "desk lamp", "router", "blender", "headphones"]
# 14 user templates over 4 topics, each with slots, all answered with one JSON contract
TEMPLATES = {
    "billing": ["I was charged twice for my {p} order {n}, please refund one.",
                "My invoice {n} shows the wrong price for the {p}.",
                "Why did my card get billed {n} dollars for a {p} I returned?",
                "Can I get a receipt for the {p} I bought last week?"],
    "shipping": ["My {p} (order {n}) still has not arrived after ten days.",
                 "The tracking for order {n} has not moved since Monday.",
                 "The box with my {p} arrived crushed and the {p} is broken.",
                 "Can you ship the {p} to my office instead of my home?"],
    "account": ["I cannot log in since I changed my e-mail, it is {name}@mail.com now.",
                "Please delete my account, I no longer use it.",
                "My password reset link for {name} never arrives."],
    "product": ["Does the {p} work with 110 volt outlets?",
                "How long is the warranty on the {p}?",
                "Is the {p} available in black, and when?"],
}
SYSTEM = ("You are the intake assistant of Northwind's support desk. Read the customer's "
          "message and return a JSON object with the keys topic, urgency and summary.")


def _answer(content: str | None = None) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}]}


def _rows(bodies: list[tuple[dict[str, Any], dict[str, Any]]], first: int = 1
          ) -> list[dict[str, Any]]:
    return [{"seq": first + i, "task": None, "request": body, "response": response}
            for i, (body, response) in enumerate(bodies)]


def _message(rng: random.Random) -> tuple[str, str]:
    topic = rng.choice(list(TEMPLATES))
    text = rng.choice(TEMPLATES[topic]).format(p=rng.choice(PRODUCTS), n=rng.randint(1000, 9999),
                                               name=rng.choice(NAMES).lower())
    return topic, text


def one_prompt_many_templates(n: int, seed: int, system: str = SYSTEM
                              ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        topic, text = _message(rng)
        answer = json.dumps({"topic": topic, "urgency": rng.choice(["low", "high"]),
                             "summary": text[:40]})
        out.append(("intake", {"messages": [{"role": "system", "content": system},
                                            {"role": "user", "content": text}]},
                    _answer(answer)["choices"][0]["message"]))
    return out


INSTRUCTIONS = {
    "topic": ("Which team should handle this customer message: billing, shipping, account "
              "or product? Answer with the team name only.", lambda t, x: t),
    "extract": ("Pull the order number and the product out of this customer message. Return "
                'JSON: {"order": ..., "product": ...}.',
                lambda t, x: json.dumps({"order": None, "product": x.split()[-1]})),
    "reply": ("Write a short, friendly first reply to this customer message, saying that we "
              "are looking into it.",
              lambda t, x: f"Thanks for writing to us about this. We are looking into '{x[:30]}' "
                           "now and will get back to you within a day."),
}


def generic_three_instructions(n: int, seed: int
                               ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """One generic prompt; the same customer messages asked three things, in three shapes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name = list(INSTRUCTIONS)[i % 3]
        instruction, answer = INSTRUCTIONS[name]
        topic, text = _message(rng)
        body = {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                             {"role": "user", "content": f"{instruction}\n\n{text}"}]}
        out.append((name, body, {"role": "assistant", "content": answer(topic, text)}))
    return out


def _found(reqs: list[tuple[str, dict[str, Any], dict[str, Any]]], **kw: Any) -> Discovery:
    return discover(bench.rows_of(reqs), min_task_examples=20, **kw)


def test_one_specific_prompt_with_many_user_templates_is_one_task() -> None:
    d = _found(one_prompt_many_templates(280, seed=1))
    assert len(d.tasks) == 1 and d.tasks[0].kind == "json"
    assert len(d.assignments) == 280 and d.report["pending"] == []


def test_three_instructions_under_a_generic_prompt_are_three_tasks() -> None:
    from sklearn.metrics import adjusted_rand_score

    reqs = generic_three_instructions(270, seed=2)
    d = _found(reqs)
    by_seq = {seq: task for task, seq in d.assignments}
    assert sorted(t.kind for t in d.tasks) == ["json", "label", "text"]
    truth = [t for t, _, _ in reqs]
    assert adjusted_rand_score(truth, [by_seq.get(i + 1) for i in range(len(reqs))]) == 1.0


@pytest.mark.parametrize("edit", [
    ("2025-03-14", "2025-11-02"),  # a date
    ("Northwind's", "Contoso's"),  # a word (a brand)
    ("Read the customer's message", "Read the client's message"),
])
def test_a_prompt_edited_by_a_word_or_a_date_stays_one_task(edit: tuple[str, str]) -> None:
    before = SYSTEM + " Today is 2025-03-14."
    after = before.replace(*edit)
    assert after != before
    first = _found(one_prompt_many_templates(120, seed=3, system=before))
    (task,) = first.tasks
    rows = bench.rows_of(one_prompt_many_templates(120, seed=3, system=before))
    for row in rows:
        row["task"] = task.id
    edited = bench.rows_of(one_prompt_many_templates(60, seed=4, system=after), first=1000)
    again = discover(rows + edited, existing=first.tasks, min_task_examples=20)
    assert [t.id for t in again.tasks] == [task.id] and again.tasks[0].info["count"] == 180
    # both from the start: one task too
    both = discover(bench.rows_of(one_prompt_many_templates(60, seed=5, system=before)) + edited,
                    min_task_examples=20)
    assert len(both.tasks) == 1 and both.tasks[0].info["count"] == 120


def test_prompts_a_word_apart_with_other_answers_stay_apart() -> None:
    """Alike prompts are one task only when answered alike: a classifier whose prompt differs
    by one word from another's but whose labels never overlap is another task."""
    rng = random.Random(6)
    reqs = []
    for i in range(160):
        kind = "sentiment" if i % 2 else "priority"
        labels = ["positive", "negative", "neutral"] if kind == "sentiment" else ["p1", "p2"]
        system = f"Label the {kind} of the customer message below. Reply with the label only."
        reqs.append((kind, {"messages": [{"role": "system", "content": system},
                                         {"role": "user", "content": _message(rng)[1]}]},
                     {"role": "assistant", "content": rng.choice(labels)}))
    assert len(_found(reqs).tasks) == 2


def _workloads() -> list[tuple[str, Any]]:
    from gateway.offline.workload import GENERIC_CAPABLE, KINDS, generate

    def demo(generic: tuple[str, ...]) -> Any:
        return lambda n, seed: [(i.task, i.request, i.answer)
                                for i in generate(n * len(KINDS), seed=seed, generic=generic)]

    def public(name: str, generic: bool) -> Any:
        def make(n: int, seed: int) -> Any:
            try:
                _, tau2, dojo = bench.load_all()
            except bench.DataMissing as e:
                pytest.skip(str(e))
            specs = ([s for d in tau2 for s in bench.tau2_specs(d)] if name == "tau2"
                     else bench.agentdojo_specs(dojo))
            return bench.requests(specs, n, seed=seed, generic=generic)
        return make

    return [("demo", demo(())), ("demo generic", demo(GENERIC_CAPABLE)),
            ("one prompt, 14 templates", lambda n, seed: one_prompt_many_templates(n * 3, seed)),
            ("generic, 3 instructions", generic_three_instructions),
            ("tau2", public("tau2", False)), ("tau2 generic", public("tau2", True)),
            ("agentdojo", public("agentdojo", False)),
            ("agentdojo generic", public("agentdojo", True))]


@pytest.mark.parametrize(("name", "make"), _workloads(), ids=[n for n, _ in _workloads()])
def test_online_assignment_agrees_with_discovery(name: str, make: Any) -> None:
    """New requests, placed by the gateway's assigner, land where re-discovery puts them."""
    result = bench.evaluate(name, make(120, 1), make(60, 2), min_examples=100,
                            min_task_examples=20)
    assert result.agree >= 0.99, result
    assert result.ari >= 0.95 and result.fragments == 0, result
