"""Task discovery on agent traffic no one on the team wrote: τ²-bench and AgentDojo tasks.

Each workload mixes task types, each with its real (or, for the derived classifier, extractor
and note-writer, a written) system prompt and tools; user texts are the packages' own user
requests, teacher answers are built from their ground-truth tool calls and labels. Every
workload also runs in a generic-prompt variant: "You are a helpful assistant." with the task's
instruction in the user message. Prints per workload: true and found tasks, adjusted Rand
index, requests in a task with enough data to train, and online agreement with discovery.

    python bench/discovery_bench.py [--per-task 300] [--min-examples 250]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.agent_data import Case, DataMissing, Domain, load_all  # noqa: E402

GENERIC_SYSTEM = "You are a helpful assistant."
OPENERS = ["", "", "", "Hi,", "Hello,", "Hi there!"]
CLOSERS = ["", "", "", "Thanks.", "Thank you!"]
# Each desk words its own note prompt (prompts a word apart would be one task by definition).
HANDOFF = {
    "airline": ("Write a short note for the human agent who takes over this airline "
                "conversation: the reservation involved, what the passenger asks for and what "
                "the airline policy allows, in two or three sentences."),
    "retail": ("Summarise this customer's request for the retail support colleague taking over. "
               "Name the order, what the customer wants changed, and what must be checked in "
               "the retail policy first. Keep it to three sentences."),
}
READS = ("get_", "find_", "list_", "search_", "calculate", "read_", "think")


@dataclass
class TaskSpec:
    name: str
    system: str
    tools: list[dict[str, Any]] | None
    answer: Callable[[Case], dict[str, Any]]
    cases: list[Case]


def _call(name: str, args: dict[str, Any], i: int) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": f"call_{i}", "type": "function",
        "function": {"name": name, "arguments": json.dumps(args, default=str)}}]}


def _text(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def _agent(case: Case) -> dict[str, Any]:
    if case.calls:
        return _call(*case.calls[0], 0)
    return _text(case.assertions[0] if case.assertions else
                 "I'm sorry, but I can't help with that under our policy.")


def _intent(case: Case) -> str:
    writes = [n for n, _ in case.calls if not n.startswith(READS)]
    if writes:
        return writes[0]
    return "information" if case.calls else "refuse"


def tau2_specs(d: Domain) -> list[TaskSpec]:
    desk = d.name.removeprefix("tau2-")
    labels = sorted({_intent(c) for c in d.cases})
    keys = ["user_id", "reservation_id"] if desk == "airline" else ["user_id", "order_id", "zip"]

    def extract(case: Case) -> dict[str, Any]:
        found: dict[str, Any] = dict.fromkeys(keys)
        for _, args in case.calls:
            for k in keys:
                if found[k] is None and k in args:
                    found[k] = args[k]
        return _text(json.dumps(found))

    def note(case: Case) -> dict[str, Any]:
        parts = [case.purpose or f"The customer writes: {case.text}", *case.assertions[:2]]
        return _text(" ".join(p.rstrip(".") + "." for p in parts if p))

    return [
        TaskSpec(f"{desk}/agent", d.system, [t.spec() for t in d.tools], _agent, d.cases),
        TaskSpec(f"{desk}/intent", (
            f"You are the intake classifier of the {desk} customer-service desk. Read the "
            f"customer's message and name the action it needs, one of: {', '.join(labels)}. "
            "Reply with the label only."), None, lambda c: _text(_intent(c)), d.cases),
        TaskSpec(f"{desk}/extract", (
            f"You read messages sent to the {desk} desk and return the identifiers in them as "
            f"a JSON object with the keys {', '.join(keys)}; use null for any the message does "
            "not give. Return only the JSON object."), None, extract, d.cases),
        TaskSpec(f"{desk}/handoff", HANDOFF[desk], None, note, d.cases),
    ]


def agentdojo_specs(suites: list[Domain]) -> list[TaskSpec]:
    specs = [TaskSpec(s.name.removeprefix("agentdojo-") + "/agent", s.system,
                      [t.spec() for t in s.tools], _agent, s.cases) for s in suites]
    everyone = [c for s in suites for c in s.cases]
    suite_of = {id(c): s.name.removeprefix("agentdojo-") for s in suites for c in s.cases}

    def plan(case: Case) -> dict[str, Any]:
        name, args = case.calls[0] if case.calls else ("none", {})
        return _text(json.dumps({"tool": name, "arguments": args}, default=str))

    specs += [
        TaskSpec("router", (
            "You route requests to Blue Sparrow Tech's assistants: workspace (email, calendar, "
            "cloud drive), travel, banking or slack. Reply with the assistant's name only."),
            None, lambda c: _text(suite_of[id(c)]), everyone),
        TaskSpec("planner", (
            "Plan the first tool call for the user's request. Reply with a JSON object "
            '{"tool": <name>, "arguments": {...}} and nothing else.'), None, plan, everyone),
    ]
    return specs


def requests(specs: list[TaskSpec], per_task: int, seed: int, generic: bool
             ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(true task, request, teacher answer), shuffled."""
    rng = random.Random(seed)
    out = []
    for spec in specs:
        for _ in range(per_task):
            case = rng.choice(spec.cases)
            text = " ".join(x for x in (rng.choice(OPENERS), case.text, rng.choice(CLOSERS)) if x)
            if generic:
                msgs = [{"role": "system", "content": GENERIC_SYSTEM},
                        {"role": "user", "content": f"{spec.system}\n\n{text}"}]
            else:
                msgs = [{"role": "system", "content": spec.system},
                        {"role": "user", "content": text}]
            body: dict[str, Any] = {"messages": msgs, "temperature": 0}
            if spec.tools:
                body["tools"] = spec.tools
            out.append((spec.name, body, spec.answer(case)))
    rng.shuffle(out)
    return out


def rows_of(reqs: list[tuple[str, dict[str, Any], dict[str, Any]]], first: int = 1
            ) -> list[dict[str, Any]]:
    return [{"seq": first + i, "task": None, "request": body,
             "response": {"choices": [{"message": answer, "finish_reason": "stop"}]}}
            for i, (_, body, answer) in enumerate(reqs)]


@dataclass
class Result:
    workload: str
    true_tasks: int
    found: int
    ari: float
    trainable: float
    fragments: int
    agree: float
    online_n: int


def evaluate(name: str, reqs: list[tuple[str, dict[str, Any], dict[str, Any]]],
             fresh: list[tuple[str, dict[str, Any], dict[str, Any]]], min_examples: int,
             min_task_examples: int, embedder: Any = None) -> Result:
    """Discover, score against the truth, then assign `fresh` online and check a re-discovery
    puts each fresh request in the same task."""
    from sklearn.metrics import adjusted_rand_score

    from distill.discover import discover
    from gateway.task_assign import TaskAssigner

    rows = rows_of(reqs)
    found = discover(rows, embedder=embedder, min_task_examples=min_task_examples)
    by_seq = {seq: task for task, seq in found.assignments}
    truth = [t for t, _, _ in reqs]
    pred = [by_seq.get(i + 1, f"none-{i}") for i in range(len(reqs))]
    sizes = Counter(by_seq.values())
    trainable = sum(1 for p in pred if sizes.get(p, 0) >= min_examples) / len(pred)
    whole = Counter(truth)
    fragments = 0  # found tasks under min_examples cut from a true task that has more
    for task, n in sizes.items():
        major = Counter(t for t, p in zip(truth, pred, strict=True) if p == task).most_common(1)
        if n < min_examples and major and whole[major[0][0]] >= min_examples:
            fragments += 1
    assigner = TaskAssigner.from_tasks(found.tasks, embedder=(lambda: embedder))

    async def online() -> list[str | None]:
        out = []
        for _, body, _ in fresh:
            a = assigner.assign(body)
            if a.task is None:
                a = await assigner.assign_by_centroid(body)
            out.append(a.task)
        return out

    placed = asyncio.run(online())
    for row, task in zip(rows, pred, strict=True):
        row["task"] = task if task in sizes else None
    again = discover(rows + rows_of(fresh, first=len(rows) + 1), existing=found.tasks,
                     embedder=embedder, min_task_examples=min_task_examples)
    later = {seq: task for task, seq in again.assignments}
    agree = sum(1 for i, task in enumerate(placed)
                if task == later.get(len(rows) + 1 + i)) / len(fresh)
    return Result(name, len(whole), len(found.tasks), adjusted_rand_score(truth, pred),
                  trainable, fragments, agree, len(fresh))


def evidence(name: str, specs: list[TaskSpec], reqs: list[tuple[str, dict[str, Any],
             dict[str, Any]]]) -> None:
    """The numbers the constants in distill/templates.py, answer_profiles.py and
    gateway/fingerprint.py are checked against, on this workload's generic-prompt variant."""
    import difflib

    from distill.answer_profiles import AnswerProfile
    from gateway.fingerprint import instruction_units, words_alike

    prompts = [s.system.split() for s in specs]
    pairs = [(a, b) for i, a in enumerate(prompts) for j, b in enumerate(prompts)
             if j > i and bool(specs[i].tools) == bool(specs[j].tools)
             and (specs[i].tools or []) == (specs[j].tools or [])]  # only these may merge
    ratios = [difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() for a, b in pairs]
    alike_pairs = sum(words_alike(a, b) for a, b in pairs)
    rng = random.Random(0)
    edits = []
    for p in prompts:
        q = list(p)
        q[rng.randrange(len(q))] = "changed"
        edits.append(difflib.SequenceMatcher(None, p, q, autojunk=False).ratio())
    # the first user-text sentence after the instruction, against the instruction's recurrence:
    # a template's opening run must stop there (TEMPLATE_SHARE)
    freq: Counter[str] = Counter()
    for _, body, _ in reqs:
        freq.update(set(instruction_units(body)))
    noise = set(OPENERS) | set(CLOSERS)
    shares = []
    for spec in specs:
        own = set(instruction_units({"messages": [{"role": "user", "content": spec.system}]}))
        top = max(freq[u] for u in own)
        for t, body, _ in reqs:
            rest = [u for u in instruction_units(body) if u not in own and u not in noise]
            if t == spec.name and rest:
                shares.append(freq[rest[0]] / top)
    labels: dict[str, list[set[str]]] = {}
    for spec in specs:
        mine = [(b, a) for t, b, a in reqs if t == spec.name]
        halves = [AnswerProfile.of({"request": b, "response": {"choices": [{"message": a}]}}
                                   for b, a in mine[k::2]) for k in (0, 1)]
        if halves[0].main_kind() == "label":
            labels[spec.name] = [set(h.labels) for h in halves]
    sets = list(labels.values())
    within = [len(a & b) / len(a | b) for a, b in sets]
    between = [len(a[0] & b[0]) / len(a[0] | b[0])
               for i, a in enumerate(sets) for b in sets[i + 1:]]
    print(f"  {name}: distinct task prompts: max difflib ratio {max(ratios, default=0):.2f}, "
          f"{alike_pairs} pairs alike; one-word edits: min ratio {min(edits):.3f}; "
          f"first user-text sentence / instruction recurrence max {max(shares):.2f}; "
          f"label-set Jaccard, two halves of one classifier: min "
          f"{min(within, default=1):.2f}, two classifiers: max "
          f"{f'{max(between):.2f}' if between else '- (one classifier)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-task", type=int, default=300, help="requests per true task")
    parser.add_argument("--fresh", type=int, default=100, help="new requests per true task")
    parser.add_argument("--min-examples", type=int, default=250,
                        help="distill.min_examples: rows a task needs to train")
    parser.add_argument("--min-task-examples", type=int, default=20,
                        help="discover()'s min_task_examples (the worker passes 2..20)")
    parser.add_argument("--embed", action="store_true", help="give tasks centroids (slow)")
    args = parser.parse_args()
    try:
        where, tau2, dojo = load_all()
    except DataMissing as e:
        print(f"skipped: {e}")
        return
    print(f"data: {where}")
    embedder = None
    if args.embed:
        from gateway.embed import SharedEmbedder

        embedder = SharedEmbedder()
    workloads = {"tau2 (airline+retail)": [s for d in tau2 for s in tau2_specs(d)],
                 "agentdojo (4 suites)": agentdojo_specs(dojo)}
    results = []
    for name, specs in workloads.items():
        for generic in (False, True):
            label = name + (" generic" if generic else "")
            reqs = requests(specs, args.per_task, seed=1, generic=generic)
            fresh = requests(specs, args.fresh, seed=2, generic=generic)
            results.append(evaluate(label, reqs, fresh, args.min_examples,
                                    args.min_task_examples, embedder))
    results += demo_results(args)
    print("evidence behind the constants (generic variants):")
    for name, specs in workloads.items():
        evidence(name, specs, requests(specs, args.per_task, seed=1, generic=True))
    print(f"{'workload':34} {'true':>4} {'found':>5} {'ARI':>6} {'trainable':>9} "
          f"{'small frags':>11} {'online agrees':>13}")
    for r in results:
        print(f"{r.workload:34} {r.true_tasks:>4} {r.found:>5} {r.ari:>6.3f} "
              f"{r.trainable:>9.1%} {r.fragments:>11} {r.agree:>8.1%} of {r.online_n}")


def demo_results(args: argparse.Namespace) -> list[Result]:
    """Our own demo workload, generic and not, for reference (it is not public data)."""
    from gateway.offline.workload import GENERIC_CAPABLE, KINDS, generate

    out = []
    for generic in ((), GENERIC_CAPABLE):
        def reqs(seed: int, per: int, generic: Any = generic
                 ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
            return [(i.task, i.request, i.answer)
                    for i in generate(per * len(KINDS), seed=seed, generic=generic)]

        out.append(evaluate("ours: demo" + (" generic" if generic else ""),
                            reqs(1, args.per_task), reqs(2, args.fresh), args.min_examples,
                            args.min_task_examples))
    return out


if __name__ == "__main__":
    main()
