"""Compare a student's answer with the teacher's, per output kind.

Used by held-out evaluation and live shadow/audit evaluation alike, so both gates measure
the same thing. An answer that is invalid (wrong shape, or breaking the request's contract)
never agrees: agreement means "the student could have served this request".
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policies.code_text import compare_code, is_code
from policies.contract import ToolCall, assistant_content, check_contract, parse_json, tool_calls

Path = tuple[str | int, ...]
_QUOTES = "\"'`“”‘’«»"
_TRAILING = ".,;:!?" + _QUOTES


class NotComparable(ValueError):
    """The teacher's answer cannot serve as the reference (e.g. not JSON for a json task)."""


@dataclass(frozen=True, slots=True)
class Comparison:
    score: float  # 0..1, partial credit (see compare())
    agree: bool  # the student's answer counts as the same as the teacher's
    valid: bool  # well-formed for the kind and the request's contract
    detail: str  # short human reason


def texts_identical(a: str | None, b: str | None) -> bool:
    """Equal after trimming and collapsing whitespace: no embedding needed for these."""
    return a is not None and b is not None and a.split() == b.split()


def normalize_label(text: str) -> str:
    """Casefolded, whitespace collapsed, surrounding quotes and trailing punctuation removed."""
    out = " ".join(text.split()).casefold()
    previous = None
    while out != previous:
        previous = out
        out = out.strip(_QUOTES + " ").rstrip(_TRAILING + " ")
    return out


def canonical(value: Any) -> Any:
    """Numbers equal in value compare equal (1 == 1.0); booleans stay distinct from 1."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """One string per JSON value regardless of key order or number spelling."""
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def leaves(value: Any, prefix: Path = ()) -> dict[Path, str]:
    """Flatten to leaf path → canonical JSON of the leaf; empty containers are leaves too."""
    if isinstance(value, dict) and value:
        out: dict[Path, str] = {}
        for k, v in value.items():
            out.update(leaves(v, (*prefix, k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(leaves(v, (*prefix, i)))
        return out
    return {prefix: canonical_json(value)}


def leaf_f1(student: dict[Path, str], teacher: dict[Path, str]) -> float:
    """F1 of (path, value) pairs: precision over the student's leaves, recall over the teacher's."""
    if not student and not teacher:
        return 1.0
    same = sum(1 for p, v in student.items() if teacher.get(p) == v)
    return 2.0 * same / (len(student) + len(teacher))


def _path_name(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _short(leaf: str) -> str:
    return leaf if len(leaf) <= 40 else leaf[:37] + "..."


def leaf_diff(student: dict[Path, str], teacher: dict[Path, str], noun: str) -> str:
    """The first difference, in the teacher's order: changed, then missing, then extra."""
    for path, value in teacher.items():
        if path in student and student[path] != value:
            return (f"{noun} '{_path_name(path)}' differs: "
                    f"{_short(student[path])} (student) vs {_short(value)} (teacher)")
    for path, value in teacher.items():
        if path not in student:
            return f"{noun} '{_path_name(path)}' missing (teacher {_short(value)})"
    for path in student:
        if path not in teacher:
            return f"extra {noun} '{_path_name(path)}'"
    return "same"


def _wrong_shape(detail: str) -> Comparison:
    return Comparison(score=0.0, agree=False, valid=False, detail=detail)


def _finish(score: float, equal: bool, detail: str, problem: str | None) -> Comparison:
    """Apply the contract: an invalid answer keeps its partial score but never agrees."""
    if problem:
        return Comparison(score=score, agree=False, valid=False, detail=problem)
    return Comparison(score=score, agree=equal, valid=True, detail=detail)


def _contract_problem(request: dict[str, Any] | None, student: dict[str, Any]) -> str | None:
    violation = check_contract(request, student) if request is not None else None
    return str(violation) if violation else None


# --- tool calls ---------------------------------------------------------------------------


def _arguments(call: ToolCall) -> Any:
    try:
        return parse_json(call.arguments, exact=True)
    except ValueError:
        return None


def _call_leaves(call: ToolCall) -> dict[Path, str]:
    args = _arguments(call)
    return leaves(args) if isinstance(args, dict) else {}


def _pair_calls(
    student: list[ToolCall], teacher: list[ToolCall]
) -> list[tuple[int, int, float]]:
    """Greedy best-first pairing (student i, teacher j, similarity); same name required."""
    s_leaves = [_call_leaves(c) for c in student]
    t_leaves = [_call_leaves(c) for c in teacher]
    candidates = sorted(
        ((leaf_f1(s_leaves[i], t_leaves[j]), i, j)
         for i in range(len(student)) for j in range(len(teacher))
         if student[i].name == teacher[j].name),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    used_s: set[int] = set()
    used_t: set[int] = set()
    pairs = []
    for sim, i, j in candidates:
        if i not in used_s and j not in used_t:
            used_s.add(i)
            used_t.add(j)
            pairs.append((i, j, sim))
    return pairs


def _call_key(call: ToolCall) -> tuple[str, str]:
    return call.name, canonical_json(_arguments(call))


def _tool_call_detail(s_calls: list[ToolCall], t_calls: list[ToolCall],
                      pairs: list[tuple[int, int, float]]) -> str:
    """The first difference: an argument of a paired call, a wrong, missing or extra call."""
    by_teacher = {j: i for i, j, _ in pairs}
    unpaired = [c.name for i, c in enumerate(s_calls) if i not in by_teacher.values()]
    for j, t in enumerate(t_calls):
        i = by_teacher.get(j)
        if i is None:
            if unpaired:
                return f"called {unpaired[0]!r} instead of {t.name!r}"
            return f"missing call {t.name!r}"
        if _call_key(s_calls[i]) != _call_key(t):
            return f"{t.name}: " + leaf_diff(_call_leaves(s_calls[i]), _call_leaves(t), "argument")
    return f"extra call {unpaired[0]!r}" if unpaired else "same"


def _compare_tool_calls(student: dict[str, Any], teacher: dict[str, Any],
                        request: dict[str, Any] | None, similarity: float | None,
                        text_threshold: float) -> Comparison:
    s_calls, t_calls = tool_calls(student), tool_calls(teacher)
    if not t_calls:  # the teacher answered in text this turn (e.g. an agent's final reply)
        if s_calls:
            return _wrong_shape(f"called {s_calls[0].name!r}, teacher answered in text")
        return _compare_text(student, teacher, request, similarity, text_threshold)
    if not s_calls:
        return _wrong_shape("expected a tool call, got text")
    problem = _contract_problem(request, student)
    if problem is None and any(not isinstance(_arguments(c), dict) for c in s_calls):
        problem = "bad_arguments: arguments are not a JSON object"
    pairs = _pair_calls(s_calls, t_calls)
    score = sum(sim for _, _, sim in pairs) / max(len(s_calls), len(t_calls))
    equal = Counter(map(_call_key, s_calls)) == Counter(map(_call_key, t_calls))
    if equal:
        detail = f"{len(t_calls)} call{'s' if len(t_calls) > 1 else ''} match"
    else:
        detail = _tool_call_detail(s_calls, t_calls, pairs)
    return _finish(1.0 if equal else score, equal, detail, problem)


# --- json, label, text --------------------------------------------------------------------


def _student_text(student: dict[str, Any]) -> str | Comparison:
    """The student's content, or the wrong-shape verdict when there is no usable content."""
    if tool_calls(student):
        return _wrong_shape("expected content, got a tool call")
    text = assistant_content(student)
    if not text or not text.strip():
        return _wrong_shape("empty answer")
    return text


def _compare_json(student: dict[str, Any], teacher: dict[str, Any],
                  request: dict[str, Any] | None, similarity: float | None,
                  text_threshold: float) -> Comparison:
    try:
        expected = parse_json(assistant_content(teacher) or "", exact=True)
    except ValueError:
        raise NotComparable("the teacher's answer is not JSON; nothing to compare with") from None
    text = _student_text(student)
    if isinstance(text, Comparison):
        return text
    try:
        got = parse_json(text, exact=True)
    except ValueError:
        fenced = " (fenced in ```)" if text.lstrip().startswith("```") else ""
        return _wrong_shape(f"student answer is not JSON{fenced}")
    s_leaves, t_leaves = leaves(got), leaves(expected)
    equal = canonical_json(got) == canonical_json(expected)
    detail = "same JSON" if equal else leaf_diff(s_leaves, t_leaves, "field")
    return _finish(leaf_f1(s_leaves, t_leaves), equal, detail, _contract_problem(request, student))


def _compare_label(student: dict[str, Any], teacher: dict[str, Any],
                   request: dict[str, Any] | None, similarity: float | None,
                   text_threshold: float) -> Comparison:
    expected = normalize_label(assistant_content(teacher) or "")
    if not expected:
        raise NotComparable("the teacher's answer has no label; nothing to compare with")
    text = _student_text(student)
    if isinstance(text, Comparison):
        return text
    got = normalize_label(text)
    if not got:
        return _wrong_shape("empty label")
    equal = got == expected
    detail = f"label {got!r}" if equal else f"label {got!r} (student) vs {expected!r} (teacher)"
    return _finish(1.0 if equal else 0.0, equal, detail, _contract_problem(request, student))


def _compare_text(student: dict[str, Any], teacher: dict[str, Any],
                  request: dict[str, Any] | None, similarity: float | None,
                  text_threshold: float) -> Comparison:
    text = _student_text(student)
    if isinstance(text, Comparison):
        return text
    problem = _contract_problem(request, student)
    reference = assistant_content(teacher)
    if texts_identical(text, reference):
        return _finish(1.0, True, "identical text", problem)
    if is_code(reference):  # a query or a code block: its tokens, not its meaning's neighbours
        equal, score, detail = compare_code(text, reference or "")
        return _finish(score, equal, detail, problem)
    if similarity is None:
        raise ValueError(
            "comparing free text needs `similarity` (cosine of sentence embeddings of both "
            "answers, computed by the caller); only identical texts can be compared without it"
        )
    equal = similarity >= text_threshold
    sign = "≥" if equal else "<"
    detail = f"similarity {similarity:.2f} {sign} {text_threshold:.2f}"
    return _finish(min(1.0, max(0.0, similarity)), equal, detail, problem)


_Comparator = Callable[
    [dict[str, Any], dict[str, Any], dict[str, Any] | None, float | None, float], Comparison
]
COMPARATORS: dict[str, _Comparator] = {
    "tool_call": _compare_tool_calls,
    "json": _compare_json,
    "label": _compare_label,
    "text": _compare_text,
}


def compare(kind: str, student: dict[str, Any], teacher: dict[str, Any], *,
            request: dict[str, Any] | None = None, similarity: float | None = None,
            text_threshold: float = 0.85) -> Comparison:
    """Compare two OpenAI assistant messages as answers of the given output kind.

    Scores: tool_call = mean per-call argument F1 over a greedy same-name pairing, divided by
    the larger call count (extra or missing calls cost); json = F1 over leaf paths;
    label = 1/0; text = the similarity (code: token sequence similarity, agreeing only when
    the tokens are the teacher's, `policies.code_text`). Raises NotComparable when the
    teacher's answer is no usable reference, ValueError for an unknown kind or free text
    without `similarity`.
    """
    comparator = COMPARATORS.get(kind)
    if comparator is None:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {sorted(COMPARATORS)}")
    return comparator(student, teacher, request, similarity, text_threshold)
