"""Public agent data read from the `inspect-evals` wheel on PyPI (MIT licence), not vendored.

τ²-bench's airline and retail domains (Sierra, MIT: policies, tool code, tasks with the
user's reason for calling and the ground-truth tool calls) and AgentDojo's four suites (ETH
Zurich SPyLab, MIT: user-task prompts, ground-truth tool calls, tool lists, the agent's system
message), as `inspect_evals` 0.28.0 ships them, and FreshQA's questions with their answers
(Vu et al. 2023, in the wheel's abstention_bench data). Found as an installed package or as a wheel
(`pip download --no-deps inspect-evals==0.28.0 -d /tmp/pkgs`); nothing is imported from it.
"""

from __future__ import annotations

import ast
import csv
import glob
import importlib.util
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WHEEL_DIRS = ("/tmp/pkgs", ".")
HOW_TO_GET = ("pip download --no-deps inspect-evals==0.28.0 -d /tmp/pkgs "
              "(or set SLIMGATE_AGENT_DATA to a folder holding the wheel)")


class DataMissing(RuntimeError):
    """The public data is not on this machine."""


@dataclass
class Tool:
    name: str
    description: str
    params: list[str]

    def spec(self) -> dict[str, Any]:
        props = {p: {"type": "string"} for p in self.params}
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": props, "required": self.params}}}


@dataclass
class Case:
    """One user request of a domain, with what the package says the agent should do."""

    text: str  # the user's message
    calls: list[tuple[str, dict[str, Any]]]  # ground-truth tool calls, in order
    purpose: str = ""  # the package's description of the case, if any
    assertions: list[str] = field(default_factory=list)


@dataclass
class Domain:
    name: str
    system: str  # the agent's real system prompt
    tools: list[Tool]
    cases: list[Case]


class _Source:
    """Files under `inspect_evals/` from an installed package or a wheel."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("inspect_evals")
        self._dir = Path(spec.origin).parent if spec and spec.origin else None
        self._zip: zipfile.ZipFile | None = None
        if self._dir is None:
            dirs = [os.environ.get("SLIMGATE_AGENT_DATA", ""), *WHEEL_DIRS]
            wheels = sorted(w for d in dirs if d
                            for w in glob.glob(os.path.join(d, "inspect_evals-*.whl")))
            if not wheels:
                raise DataMissing("inspect-evals is neither installed nor downloaded: "
                                  + HOW_TO_GET)
            self._zip = zipfile.ZipFile(wheels[-1])
        self.where = str(self._dir or self._zip.filename)  # type: ignore[union-attr]

    def read(self, path: str) -> str:
        if self._dir is not None:
            return (self._dir / path).read_text()
        assert self._zip is not None
        return self._zip.read("inspect_evals/" + path).decode()


def _first_person(text: str) -> str:
    """τ²-bench writes the user's brief in the second person; the user says it in the first."""
    swaps = [(r"\bYou are\b", "I am"), (r"\byou are\b", "I am"), (r"\bYou were\b", "I was"),
             (r"\byou were\b", "I was"), (r"\bYou have\b", "I have"), (r"\byou have\b", "I have"),
             (r"\bYour\b", "My"), (r"\byour\b", "my"), (r"\byourself\b", "myself"),
             (r"\bYou\b", "I"), (r"\byou\b", "me")]
    for pattern, repl in swaps:
        text = re.sub(pattern, repl, text)
    return re.sub(r"\s+", " ", text).strip()


def _public_methods(source: str, cls: str) -> list[Tool]:
    tools = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_") \
                        and fn.name != "initialize":
                    doc = (ast.get_docstring(fn) or fn.name).split("\n\n")[0]
                    params = [a.arg for a in fn.args.args if a.arg != "self"]
                    tools.append(Tool(fn.name, doc, params))
    return tools


def tau2_domain(src: _Source, name: str) -> Domain:
    agents = src.read("tau2/common/agents.py")
    m = re.search(r'content=f"""(<instructions>.*?</instructions>)', agents, re.S)
    instructions = m.group(1) if m else "<instructions></instructions>"
    system = re.sub(r"\n {4}", "\n", instructions) + "\n" + src.read(
        f"tau2/data/domains/{name}/policy.txt")
    cls = f"{name.capitalize()}AgentTools"
    tools = _public_methods(src.read(f"tau2/{name}/{cls}.py"), cls)
    cases = []
    for task in json.loads(src.read(f"tau2/data/domains/{name}/tasks.json")):
        ins = ((task.get("user_scenario") or {}).get("instructions") or {})
        text = " ".join(x for x in (ins.get("reason_for_call"), ins.get("known_info")) if x)
        crit = task.get("evaluation_criteria") or {}
        calls = [(a["name"], a.get("arguments") or {}) for a in crit.get("actions") or []]
        purpose = ((task.get("description") or {}).get("purpose") or "").strip()
        cases.append(Case(_first_person(text), calls, purpose, crit.get("nl_assertions") or []))
    return Domain(f"tau2-{name}", system, tools, cases)


def _literal(node: ast.AST, env: dict[str, Any] | None = None) -> Any:
    """A literal's value; names, `self.X` and f-strings resolved from the module's and the
    class's constants; anything computed stands in as its source text."""
    env = env or {}
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "self" \
            and node.attr in env:
        return env[node.attr]
    if isinstance(node, ast.JoinedStr):
        return "".join(str(_literal(v.value, env)) if isinstance(v, ast.FormattedValue)
                       else str(getattr(v, "value", "")) for v in node.values)
    if isinstance(node, ast.List):
        return [_literal(v, env) for v in node.elts]
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return ast.unparse(node)


def _constants(body: list[ast.stmt], env: dict[str, Any]) -> dict[str, Any]:
    out = dict(env)
    for item in body:
        if isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name):
            value = _literal(item.value, out)
            if isinstance(value, str | int | float | list):
                out[item.targets[0].id] = value
    return out


def _tool_calls(fn: ast.FunctionDef, env: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    calls = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ToolCall":
            kw = {k.arg: k.value for k in node.keywords}
            name = _literal(kw["function"]) if "function" in kw else None
            args = kw.get("arguments")
            if isinstance(name, str):
                pairs = zip(args.keys, args.values, strict=True) if isinstance(args, ast.Dict) \
                    else []
                calls.append((name, {str(_literal(k)): _literal(v, env) for k, v in pairs
                                     if k is not None}))
    return calls


def agentdojo_domain(src: _Source, suite: str, system: str) -> Domain:
    cases = []
    module = ast.parse(src.read(f"agentdojo/task_suites/{suite}/user_tasks.py")).body
    top = _constants(module, {})
    for node in module:
        if not isinstance(node, ast.ClassDef):
            continue
        env = _constants(node.body, top)
        prompt = env.get("PROMPT") if isinstance(env.get("PROMPT"), str) else None
        calls = []
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "ground_truth":
                calls = _tool_calls(item, env)
        if prompt:
            cases.append(Case(re.sub(r"\s+", " ", prompt).strip(), calls))
    suite_src = src.read(f"agentdojo/task_suites/{suite}/task_suite.py")
    m = re.search(r"TOOLS = \[(.*?)\]", suite_src, re.S)
    names = re.findall(r"(\w+)\(\)", m.group(1)) if m else []
    seen = {c[0]: list(c[1]) for case in cases for c in case.calls}
    tools = [Tool(n, n.replace("_", " "), seen.get(n, [])) for n in names]
    return Domain(f"agentdojo-{suite}", system, tools, cases)


def load_all() -> tuple[str, list[Domain], list[Domain]]:
    """(where the data came from, τ²-bench domains, AgentDojo suites); DataMissing if absent."""
    src = _Source()
    tau2 = [tau2_domain(src, d) for d in ("airline", "retail")]
    agent_py = src.read("agentdojo/agents/agent.py")
    m = re.search(r'dedent\(\s*"""(.*?)"""', agent_py, re.S)
    system = re.sub(r"\n {8}", "\n", m.group(1)).strip() if m else ""
    dojo = [agentdojo_domain(src, s, system) for s in ("workspace", "travel", "banking", "slack")]
    return src.where, tau2, dojo


FRESHQA = "abstention_bench/data/freshqa/FreshQA_v12182024.csv"


def freshqa() -> list[tuple[str, str]]:
    """(question, first reference answer) of every FreshQA question that has one; the answers
    are facts (names, dates, numbers) that the question does not contain."""
    text = _Source().read(FRESHQA)
    rows = list(csv.reader(io.StringIO(text)))
    head = next(i for i, r in enumerate(rows) if r[:3] == ["id", "split", "question"])
    q, a = rows[head].index("question"), rows[head].index("answer_0")
    return [(r[q].strip(), r[a].strip()) for r in rows[head + 1:]
            if len(r) > a and r[q].strip() and r[a].strip()]
