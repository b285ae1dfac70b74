"""The loop benchmark's workload: five task types built from public data, in two variants.

Every request and gold answer comes from public data nobody here wrote: SNIPS utterances
(tool calls, intent labels, slots as schema-bound JSON), τ²-bench and AgentDojo cases (the
user's request under the domain's real system prompt and tools, answered with the first
ground-truth tool call) and FreshQA (questions whose answers hold facts the question lacks).
The replay teacher serves these gold answers. `repeated`: a few hundred distinct requests
per type drawn Zipf-like; `unique`: each type's requests in turn, repeated only when used up.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from bench.agent_data import Domain, Tool
from bench.snips_workload import INTENTS, snake, tools
from bench.snips_workload import SYSTEM as SNIPS_TOOLS_SYSTEM
from gateway.fingerprint import request_key

Variant = Literal["repeated", "unique"]
TYPES = ("snips_tools", "snips_label", "snips_json", "agent_tools", "freshqa_text")
LABEL_SYSTEM = ("You sort the requests a smart speaker hears. Answer with exactly one word, the "
                "request's intent: " + ", ".join(INTENTS) + ".")
JSON_SYSTEM = ("Extract the slots of the user's request to a smart speaker as a JSON object. "
               "Copy each value verbatim from what the user said; leave out slots not given.")
QA_SYSTEM = "Answer the user's question in one short sentence."
Utterance = tuple[str, str, dict[str, str]]  # (intent, text, {slot: value})


@dataclass(frozen=True)
class Item:
    kind: str  # one of TYPES: which workload type the request belongs to
    request: dict[str, Any]  # the chat request, without `model`
    answer: dict[str, Any]  # the gold assistant message the teacher replays


@dataclass
class Sources:
    snips: list[Utterance]  # bench.snips_workload.utterances
    domains: list[Domain]  # τ²-bench and AgentDojo (bench.agent_data.load_all)
    qa: list[tuple[str, str]]  # (question, answer): bench.agent_data.freshqa


def _user(system: str, text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def _call(n: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": f"call_{n}", "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)}}]}


def _json_type(value: Any) -> str:
    kinds = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
             (list, "array"), (dict, "object"))
    return next((t for cls, t in kinds if isinstance(value, cls)), "null")


def agent_tools(domain: Domain) -> list[dict[str, Any]]:
    """The domain's tools; a parameter's type and whether it is required follow the gold
    calls (the package keeps names only), so every gold answer honours its own contract."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for case in domain.cases:
        for name, args in case.calls:
            seen.setdefault(name, []).append(args)
    known = {t.name for t in domain.tools}
    extra = [Tool(n, n.replace("_", " "), sorted({p for c in seen[n] for p in c}))
             for n in seen if n not in known]  # shared tools (τ²'s transfer_to_human_agents)
    out = []
    for tool in [*domain.tools, *extra]:
        calls = seen.get(tool.name, [])
        props: dict[str, Any] = {}
        for p in tool.params:
            types = {_json_type(c[p]) for c in calls if p in c}
            props[p] = {"type": types.pop()} if len(types) == 1 else {}
        required = [p for p in tool.params if calls and all(p in c for c in calls)]
        out.append({"type": "function", "function": {
            "name": tool.name, "description": tool.description,
            "parameters": {"type": "object", "properties": props, "required": required}}})
    return out


def pools(src: Sources, seed: int = 0) -> dict[str, list[Item]]:
    """Every distinct request of each type, shuffled; SNIPS utterances split three ways so no
    sentence serves two types."""
    rng = random.Random(seed)
    snips = list(src.snips)
    rng.shuffle(snips)
    parts = [snips[i::3] for i in range(3)]
    snips_tools = tools(src.snips)
    slot_names = sorted({s for _, _, slots in src.snips for s in slots})
    schema = {"type": "object", "additionalProperties": False,
              "properties": {s: {"type": "string"} for s in slot_names}}
    fmt = {"type": "json_schema", "json_schema": {"name": "slots", "schema": schema}}
    out: dict[str, list[Item]] = {t: [] for t in TYPES}
    for n, (intent, text, slots) in enumerate(parts[0]):
        out["snips_tools"].append(Item("snips_tools", {
            "messages": _user(SNIPS_TOOLS_SYSTEM, text), "tools": snips_tools,
            "tool_choice": "auto", "max_tokens": 128}, _call(n, snake(intent), slots)))
    for intent, text, _ in parts[1]:
        out["snips_label"].append(Item("snips_label", {
            "messages": _user(LABEL_SYSTEM, text), "max_tokens": 8},
            {"role": "assistant", "content": intent}))
    for _, text, slots in parts[2]:
        out["snips_json"].append(Item("snips_json", {
            "messages": _user(JSON_SYSTEM, text), "response_format": fmt, "max_tokens": 128},
            {"role": "assistant", "content": json.dumps(slots)}))
    for domain in src.domains:
        specs = agent_tools(domain)
        for n, case in enumerate(c for c in domain.cases if c.calls):
            name, args = case.calls[0]
            out["agent_tools"].append(Item("agent_tools", {
                "messages": _user(domain.system, case.text), "tools": specs,
                "tool_choice": "auto", "max_tokens": 256}, _call(n, name, args)))
    for question, answer in src.qa:
        out["freshqa_text"].append(Item("freshqa_text", {
            "messages": _user(QA_SYSTEM, question), "max_tokens": 96},
            {"role": "assistant", "content": answer}))
    for items in out.values():
        rng.shuffle(items)
    return out


def schedule(by_type: dict[str, list[Item]], variant: Variant, n: int, *, distinct: int = 300,
             zipf: float = 1.0, seed: int = 0) -> list[Item]:
    """`n` requests, each of a type picked at random (equal shares). `repeated`: a type's
    first `distinct` requests, the k-th drawn with weight 1/k**zipf; `unique`: in turn."""
    rng = random.Random(seed)
    kinds = [k for k, v in by_type.items() if v]
    if variant == "repeated":
        heads = {k: by_type[k][:distinct] for k in kinds}
        weights = {k: [1 / (r + 1) ** zipf for r in range(len(heads[k]))] for k in kinds}
    used = Counter[str]()
    out = []
    for _ in range(n):
        k = rng.choice(kinds)
        if variant == "repeated":
            out.append(rng.choices(heads[k], weights[k])[0])
        else:
            out.append(by_type[k][used[k] % len(by_type[k])])
            used[k] += 1
    return out


def repetition(items: list[Item]) -> dict[str, float]:
    """Per type (and `all`): the share of requests that repeat an earlier one."""
    groups: dict[str, list[str]] = {"all": []}
    for it in items:
        key = request_key(it.request)
        groups.setdefault(it.kind, []).append(key)
        groups["all"].append(key)
    return {k: round(1 - len(set(v)) / len(v), 4) for k, v in groups.items() if v}


def traces(items: list[Item], model: str) -> list[dict[str, Any]]:
    """The replay teacher's traces: one gold chat.completion per distinct request."""
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        finish = "tool_calls" if it.answer.get("tool_calls") else "stop"
        out.setdefault(request_key(it.request), {
            "request": {"model": model, **it.request},
            "response": {"object": "chat.completion", "model": model, "choices": [{
                "index": 0, "message": it.answer, "finish_reason": finish}]}})
    return list(out.values())
