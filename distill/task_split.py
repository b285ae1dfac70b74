"""Whether one fingerprint group (one masked system prompt, tool set and response format) is one
task or several, and which request belongs to which.

A group is one task unless there is evidence of more: its requests fall into recurring
instruction templates (see `distill.templates`) and either the instruction is carried in the
user turn (a generic system prompt: each template is its own task unless answered alike) or
the templates are answered in shapes that cannot be one contract (`distill.answer_profiles`).
Topics of the user content are never evidence. Each row then goes where the gateway would put
it: to the part whose templates it shares most (`gateway.task_assign.best_template`); a row
sharing none stays unassigned (the teacher serves its like), except in a group split by answer
shape with an embedder at hand, where it takes the part whose user content is nearest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill.answer_profiles import AnswerProfile, answered_alike, answered_differently
from distill.templates import Template, alike, carried_in_user_turn, mine_templates, words
from gateway.fingerprint import instruction_units, signature, system_text, unit_hash
from gateway.task_assign import best_template

# Rows per part embedded for its centroid (a cost cap, not a decision). Centroids of 256
# evenly spread rows are within cosine 0.998 of those of 1,000 on every task of a loop-bench
# store (10 tasks, 118-1,824 rows: SNIPS, τ²-bench, AgentDojo, FreshQA; 2026-12-06), far
# closer than any two tasks' centroids; 1,000 made embedding 88% of a discovery pass.
SAMPLE = 256


@dataclass
class Candidate:
    """A would-be task: its rows and what the gateway needs to find it again."""

    rows: list[dict[str, Any]]
    parts: list[str]  # "fingerprint/template" for each merged part: the id's source
    explicit: str | None = None
    centroid: Any = None  # unit numpy vector [system | content] / sqrt(2), with an embedder
    signature: str = ""
    fingerprints: set[str] = field(default_factory=set)
    systems: set[str] = field(default_factory=set)  # masked system prompts
    templates: list[tuple[str, ...]] = field(default_factory=list)  # instruction templates
    split: str | None = None  # "instruction" | "answer": how its fingerprint group was split
    _profile: AnswerProfile | None = None

    def profile(self) -> AnswerProfile:
        if self._profile is None:
            self._profile = AnswerProfile.of(self.rows)
        return self._profile

    def template_hashes(self) -> set[str]:
        return {unit_hash(u) for key in self.templates for u in key}


def sample(n: int, size: int) -> list[int]:
    """Evenly spread indices, deterministic, so re-discovery sees the same sample."""
    if n <= size:
        return list(range(n))
    return [round(i * (n - 1) / (size - 1)) for i in range(size)]


def centroid_of(rows: list[dict[str, Any]], embedder: Any, cache: dict[str, Any]) -> Any:
    from gateway.embed import normalise, request_vectors

    reqs = [rows[i]["request"] for i in sample(len(rows), SAMPLE)]
    return normalise(request_vectors(embedder, reqs, system_cache=cache).mean(axis=0))


def _join_by_evidence(templates: list[Template], profiles: list[AnswerProfile],
                      instruction_in_user: bool) -> list[list[int]]:
    """Template indices grouped into tasks. Instruction in the user turn: separate unless
    answered alike, or worded alike and not answered differently. Otherwise (templates under one
    specific prompt): together unless answered differently, joined complete-linkage (a template
    must not bridge two contracts); label sets count only between templates with a slot (a
    request repeated word for word gets the same label each time: its label set says nothing)."""
    keys = [t.key for t in templates]
    comps = [[i] for i in range(len(keys))]
    where = list(range(len(keys)))
    pairs = sorted(
        ((i, j) for i in range(len(keys)) for j in range(i + 1, len(keys))),
        key=lambda p: (not answered_alike(profiles[p[0]], profiles[p[1]]), p))
    for i, j in pairs:
        a, b = where[i], where[j]
        if a == b:
            continue
        if instruction_in_user:
            ok = answered_alike(profiles[i], profiles[j]) or (
                alike(words(keys[i]), words(keys[j]))
                and not answered_differently(profiles[i], profiles[j]))
        else:
            ok = not any(answered_differently(
                profiles[x], profiles[y], labels=templates[x].slotted and templates[y].slotted)
                for x in comps[a] for y in comps[b])
        if ok:
            comps[a] += comps[b]
            for x in comps[b]:
                where[x] = a
            comps[b] = []
    return [sorted(c) for c in comps if c]


def _rejoin_parts(comps: list[list[int]], profiles: list[AnswerProfile]) -> list[list[int]]:
    """Parts under one specific prompt joined again unless, taken whole, they are answered
    differently: a few templates with few labels each may look disjoint where the parts
    they belong to share labels, and then they are one classifier."""
    merged = True
    while merged and len(comps) > 1:
        merged = False
        for i in range(len(comps)):
            for j in range(i + 1, len(comps)):
                if not answered_differently(profiles[i], profiles[j]):
                    comps[i] += comps.pop(j)
                    profiles[i] = _joined(profiles[i], profiles.pop(j))
                    merged = True
                    break
            if merged:
                break
    return [sorted(c) for c in comps]


def _joined(a: AnswerProfile, b: AnswerProfile) -> AnswerProfile:
    return AnswerProfile(a.n + b.n, a.kinds + b.kinds, a.labels + b.labels,
                         a.key_sets + b.key_sets)


def _declared_schema(request: dict[str, Any]) -> bool:
    rf = request.get("response_format")
    return isinstance(rf, dict) and rf.get("type") == "json_schema"


def split_group(
    fp: str, group: list[dict[str, Any]], embedder: Any, min_rows: int,
    cache: dict[str, Any], report: dict[str, Any],
) -> list[Candidate]:
    """One fingerprint group as one candidate, or as several on evidence (see the docstring)."""
    req = group[0]["request"]
    sig, system = signature(req), system_text(req)
    units = [instruction_units(r["request"]) for r in group]
    templates = mine_templates(units, min_rows)
    keys = [t.key for t in templates]
    comps: list[list[int]] = [list(range(len(keys)))]
    mode = None
    if len(keys) >= 2:
        profiles = [AnswerProfile.of(group[i] for i in t.rows) for t in templates]
        mode = "instruction" if carried_in_user_turn(system, templates) else "answer"
        if mode == "answer" and _declared_schema(req):
            # The client declared the answer's one contract (a json_schema): which of its
            # optional fields an answer fills follows the content, not another task. Split
            # by them, a live request could only be placed by guessing (SNIPS slots as JSON,
            # bench/loop_bench.py: 4 parts, live agreement 0.6-0.7 against 0.9 held out).
            mode = None
        else:
            comps = _join_by_evidence(templates, profiles, mode == "instruction")
        if mode == "answer":
            comps = _rejoin_parts(comps, [AnswerProfile.of(
                group[i] for k in comp for i in templates[k].rows) for comp in comps])
    entry = {"fingerprint": fp, "rows": len(group), "templates": len(keys), "split": None,
             "parts": 1, "unmatched": 0}
    report["groups"].append(entry)

    def candidate(rows: list[dict[str, Any]], part: str, tmpl: list[tuple[str, ...]]) -> Candidate:
        return Candidate(rows, [f"{fp}/{part}"], signature=sig, fingerprints={fp},
                         systems={system}, templates=tmpl, split=mode if tmpl else None)

    if len(comps) < 2:
        return [candidate(group, "0", [])]
    owned = [[keys[k] for k in comp] for comp in comps]
    owned_hashes = [{unit_hash(u) for key in tmpl for u in key} for tmpl in owned]
    chosen = [best_template([unit_hash(u) for u in row_units], owned_hashes)
              for row_units in units]
    parts: list[list[dict[str, Any]]] = [[] for _ in comps]
    for row, part in zip(group, chosen, strict=True):
        if part is not None:
            parts[part].append(row)
    cands = [candidate(rows, unit_hash("\n".join(min(tmpl))), tmpl)
             for rows, tmpl in zip(parts, owned, strict=True) if rows]
    if len(cands) < 2:  # the templates found no rows of their own apart: one task after all
        return [candidate(group, "0", [])]
    if embedder is not None:
        for c in cands:
            c.centroid = centroid_of(c.rows, embedder, cache)
    left = [i for i, part in enumerate(chosen) if part is None]
    if left and mode == "answer" and embedder is not None:  # instances: the nearest content
        _place_by_content([group[i] for i in left], cands, embedder)
        left = []
    entry.update(split=mode, parts=len(cands), unmatched=len(left))
    for c in cands:
        c.rows.sort(key=lambda r: r.get("seq") or 0)
    return cands


def _place_by_content(rows: list[dict[str, Any]], cands: list[Candidate], embedder: Any) -> None:
    """Rows no template places, put as the gateway would: nearest content centroid (the content
    half of [system | content])."""
    import numpy as np

    from gateway.embed import normalise
    from gateway.fingerprint import content_text

    half = len(cands[0].centroid) // 2
    centres = normalise(np.stack([c.centroid[half:] for c in cands]))
    vecs = embedder.encode([content_text(r["request"]) for r in rows])
    for row, j in zip(rows, (vecs @ centres.T).argmax(axis=1), strict=True):
        cands[int(j)].rows.append(row)
