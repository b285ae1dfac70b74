"""Why a student's tool call differs from the teacher's, and how copy slots cut a request.

`miss_causes` compares two assistant messages argument by argument and names the causes
(wrong tool, list items missing or extra, adjacent values merged or split, a span cut or
shifted, case, a value left out or added); `slot_fate` says what the copy-slot proposer did
to one copied value (kept whole, merged with its neighbour, cut, not proposed). Pure Python,
used by `bench/toolcall_misses.py` and its tests.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.copy_slots import find_all

# In the order a miss is filed under when it has several causes: the shape before a value.
CAUSES = ["wrong tool", "list items missing or extra", "adjacent values merged",
          "adjacent values split", "span cut or shifted", "case", "value left out",
          "value added", "other value"]


def calls(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for call in message.get("tool_calls") or []:
        fn = (call or {}).get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except (TypeError, ValueError):
            args = {"\x00unreadable": fn.get("arguments")}
        out.append((str(fn.get("name") or ""), args if isinstance(args, dict) else {}))
    return out


def _strings(args: dict[str, Any]) -> list[str]:
    """Every scalar value of a call as text, list items one by one."""
    out = []
    for v in args.values():
        for x in v if isinstance(v, list) else [v]:
            if x is not None and not isinstance(x, dict | list):
                out.append(str(x))
    return out


def _value_cause(sv: str, tv: str, teacher: list[str], student: list[str]) -> str:
    """Why one copied value differs: `teacher`/`student` are all values of the two calls."""
    if sv.lower() == tv.lower():
        return "case"
    others = [t for t in teacher if t != tv]
    if tv in sv and any(o in sv for o in others if o):
        return "adjacent values merged"
    if sv in tv and any(s != sv and s in tv for s in student):
        return "adjacent values split"
    if sv in tv or tv in sv or sv in others or any(sv in o for o in others):
        return "span cut or shifted"
    return "other value"


def miss_causes(student: dict[str, Any], teacher: dict[str, Any]) -> list[str]:
    """The causes of one disagreement on tool calls, most structural first ([] if none)."""
    s_calls, t_calls = calls(student), calls(teacher)
    if [n for n, _ in s_calls] != [n for n, _ in t_calls]:
        return ["wrong tool"]
    found: set[str] = set()
    for (_, sa), (_, ta) in zip(s_calls, t_calls, strict=True):
        s_all, t_all = _strings(sa), _strings(ta)
        for key in ta.keys() | sa.keys():
            tv, sv = ta.get(key), sa.get(key)
            if tv == sv:
                continue
            if sv is None:
                merged = any(str(tv) in s and s != str(tv) for s in s_all)
                found.add("adjacent values merged" if merged else "value left out")
            elif tv is None:
                split = any(str(sv) in t and t != str(sv) for t in t_all)
                found.add("adjacent values split" if split else "value added")
            elif isinstance(tv, list) and isinstance(sv, list):
                if len(tv) != len(sv):
                    found.add("list items missing or extra")
                extra = [str(x) for x in sv if x not in tv]
                for s in extra:
                    whole = [str(t) for t in tv if str(t) in s]
                    parts = [str(t) for t in tv if s in str(t)]
                    found.add("adjacent values merged" if len(whole) > 1 else
                              "adjacent values split" if parts else
                              _value_cause(s, str(tv[0]) if tv else "", t_all, s_all))
            else:
                found.add(_value_cause(str(sv), str(tv), t_all, s_all))
    return [c for c in CAUSES if c in found]


def slot_fate(text: str, value: str, proposed: list[str]) -> str:
    """What the proposer did to a value copied from `text`: 'whole', 'merged' (a proposed
    span holds it and more), 'cut' (proposed spans cut into it), or 'not proposed'."""
    if value in proposed:
        return "whole"
    spans = [(i, i + len(p)) for p in proposed for i in find_all(text, p)]
    for i in find_all(text, value):
        j = i + len(value)
        if any(a <= i and j <= b for a, b in spans):
            return "merged"
        if any(a < j and i < b for a, b in spans):
            return "cut"
    return "not proposed"
