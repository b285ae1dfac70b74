"""Readable task labels, from what the task is asked.

In order: the client's own task name; the json_schema's name (unless a generic one such as
"response"); up to three tool names; the instruction's first clause, shortened
(`distill.instruction_label`): the system prompt's, or the instruction mined from the user
turns when the system prompt says nothing (or the task was split by instruction); a longer
tool list; top TF-IDF terms only as a last resort. Labels are for people (dashboards,
reports, policy selection by label); ids stay the key. `label_from` says which source named it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from distill.instruction_label import common_label
from distill.task_split import Candidate, sample
from distill.templates import MIN_REPEAT
from gateway.fingerprint import instruction_units, message_text, system_text
from gateway.store.catalog import TaskRecord

MAX_TOOLS = 3  # tool names read as a label up to this many; past it, the instruction does
GENERIC_SCHEMAS = frozenset({"response", "output", "result", "answer", "schema", "json",
                             "data", "object", "reply", "format", "structured_output"})
SAMPLE = 200  # rows read per task (deterministic spread, as re-discovery sees them)
# Sources a label may come from, best first; a label from "terms" is replaced on
# re-discovery by one from a better source (see `distill.discover`).
SOURCES = ("explicit", "operator", "teacher", "schema", "tools", "instruction", "terms")


@dataclass
class Label:
    text: str
    source: str  # one of SOURCES


def task_labels(cands: list[Candidate]) -> list[Label]:
    """A label per candidate (see the module docstring for the order)."""
    labels: list[Label | None] = []
    docs: list[str] = []
    for c in cands:
        req = c.rows[0]["request"]
        picked = [c.rows[i]["request"] for i in sample(len(c.rows), SAMPLE)]
        labels.append(_named(c, picked))
        docs.append(system_text(req) + "\n" + "\n".join(
            message_text(m) for r in picked for m in r["messages"]
            if isinstance(m, dict) and m.get("role") == "user"))
    if any(lab is None for lab in labels):
        terms = _top_terms(docs)
        labels = [lab or Label(top, "terms") for lab, top in zip(labels, terms, strict=True)]
    return [lab if lab is not None and lab.text else Label("chat", "terms") for lab in labels]


def _named(c: Candidate, picked: list[dict[str, Any]]) -> Label | None:
    if c.explicit:
        return Label(c.explicit, "explicit")
    req = c.rows[0]["request"]
    tools = [t for t in c.signature.split("|", 1)[0].split(",") if t]
    fmt = c.signature.split("|", 1)[1] if "|" in c.signature else ""
    rf = req.get("response_format")
    js = rf.get("json_schema") if isinstance(rf, dict) else None
    name = js.get("name") if isinstance(js, dict) else None
    name = name if isinstance(name, str) else ""
    if fmt.startswith("json_schema") and name and name.lower() not in GENERIC_SCHEMAS:
        return Label(f"json: {name}", "schema")
    if 0 < len(tools) <= MAX_TOOLS:
        return Label("tools: " + ", ".join(tools), "tools")
    said = instruction(c, picked)
    if said and tools:
        return Label(f"{said} ({len(tools)} tools)", "instruction")
    if said:
        return Label(said, "instruction")
    if tools:
        return Label("tools: " + ", ".join(tools[:MAX_TOOLS]) + f" +{len(tools) - MAX_TOOLS}",
                     "tools")
    return None


def _systems(picked: list[dict[str, Any]]) -> list[str]:
    """The raw system prompts of the sampled requests, most frequent first."""
    counts = Counter("\n".join(message_text(m) for m in r.get("messages") or []
                               if isinstance(m, dict) and m.get("role") in ("system", "developer"))
                     for r in picked)
    return [s for s, _ in counts.most_common(5) if s.strip()]


def recurring_instructions(picked: list[dict[str, Any]]) -> list[str]:
    """The instruction in the user turns, most used wording first: per request, its units
    (masked sentences and lines) that recur in at least a tenth of the task's requests, as
    a mined template's do; the instance's sentences do not recur."""
    units = [instruction_units(r) for r in picked]
    freq = Counter(u for us in units for u in set(us))
    floor = max(MIN_REPEAT, len(picked) // 10)
    texts = Counter("\n".join(u for u in us if freq[u] >= floor) for us in units)
    return [t for t, _ in texts.most_common(5) if t]


def instruction(c: Candidate, picked: list[dict[str, Any]]) -> str | None:
    """What the task is asked, as a short name: the system prompt's first clause, unless the
    instruction lives in the user turn (the task was split by it, or the system prompt says
    nothing that names a task), then the mined template's."""
    from_system = common_label(_systems(picked))
    if c.split != "instruction" and from_system:
        return from_system
    return common_label(recurring_instructions(picked)) or from_system


def dedupe_labels(tasks: list[TaskRecord]) -> None:
    """Suffix repeated labels with (2), (3)... so every task reads differently; an operator's
    name is never the one changed."""
    seen: Counter[str] = Counter()
    for t in sorted(tasks, key=lambda t: t.named_by is None):
        seen[t.label] += 1
        if seen[t.label] > 1:
            t.label = f"{t.label} ({seen[t.label]})"


def _top_terms(docs: list[str], n: int = 3) -> list[str]:
    """The `n` highest TF-IDF terms of each document against the others, comma-joined."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True,
                            token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    try:
        weights = tfidf.fit_transform(docs).toarray()
    except ValueError:  # nothing but stop words anywhere
        return ["chat"] * len(docs)
    terms = tfidf.get_feature_names_out()
    return [", ".join(terms[j] for j in row.argsort()[::-1][:n] if row[j] > 0) or "chat"
            for row in weights]

