"""Answer profiles: evidence, from the teacher's answers, that two groups of requests are or
are not one task (step S3; the answer shape a student kind is planned by is S4's,
`distill.kind_plan`).

A task has one output contract. Two groups whose answers take different shapes (a tool call,
JSON, a short label, prose), JSON with different key sets, or label sets that do not overlap
are different tasks; groups answered with the same label set or the same JSON keys are one
task asked in different words. Everything else is no evidence either way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from policies.output_kinds import output_kind

# Two groups answer in different shapes when their kind histograms overlap less than this
# (histogram intersection, 0..1): the majority of each group's answers are of a kind the other
# mostly does not give. On the bench workloads (τ²-bench, AgentDojo; answers built from their
# ground truth) each task's answers are of one kind, so overlaps are 1.0 within a task and 0.0
# between shapes; this is a majority rule, not a fitted value.
MIN_KIND_OVERLAP = 0.5
# Label groups with at least this Jaccard overlap of their label sets are one classifier asked
# in different words. Measured with `bench/discovery_bench.py`: two halves of one classifier's
# requests overlap >= 0.57 (τ²-bench, 40 requests per task; 1.0 on AgentDojo's router), the
# airline and retail intent classifiers <= 0.21.
MIN_LABEL_JACCARD = 0.5


def _answer(row: dict[str, Any]) -> dict[str, Any] | None:
    choices = (row.get("response") or {}).get("choices") or []
    msg = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    return msg if isinstance(msg, dict) else None


def _label(text: str) -> str:
    return text.strip().strip(".!\"'`").strip().lower()


def _json_keys(text: str) -> frozenset[str] | None:
    try:
        value = orjson.loads(text.strip())
    except orjson.JSONDecodeError:
        return None
    return frozenset(value) if isinstance(value, dict) else None


def answer_kind(answer: dict[str, Any], request: dict[str, Any]) -> str:
    """`policies.output_kinds.output_kind`, except that under tools any non-JSON answer is "agent":
    an agent with tools calls one or replies, and both are its contract."""
    kind = output_kind(answer, request)
    if (request.get("tools") or request.get("functions")) and kind != "json":
        return "agent"
    return kind


@dataclass
class AnswerProfile:
    """What a group of requests was answered with."""

    n: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    key_sets: Counter[frozenset[str]] = field(default_factory=Counter)

    @classmethod
    def of(cls, rows: Iterable[dict[str, Any]]) -> AnswerProfile:
        p = cls()
        for row in rows:
            answer = _answer(row)
            if answer is None:
                continue
            kind = answer_kind(answer, row["request"])
            p.n += 1
            p.kinds[kind] += 1
            content = answer.get("content")
            text = content if isinstance(content, str) else ""
            if kind == "label":
                p.labels[_label(text)] += 1
            elif kind == "json" and (keys := _json_keys(text)) is not None:
                p.key_sets[keys] += 1
        return p

    def kind_share(self, kind: str) -> float:
        return self.kinds[kind] / self.n if self.n else 0.0

    def kind_overlap(self, other: AnswerProfile) -> float:
        return sum(min(self.kind_share(k), other.kind_share(k)) for k in self.kinds)

    def required_keys(self) -> frozenset[str]:
        """JSON keys present in at least half the JSON answers."""
        total = sum(self.key_sets.values())
        seen: Counter[str] = Counter()
        for keys, n in self.key_sets.items():
            seen.update(dict.fromkeys(keys, n))
        return frozenset(k for k, n in seen.items() if 2 * n >= total)

    def all_keys(self) -> frozenset[str]:
        return frozenset().union(*self.key_sets) if self.key_sets else frozenset()

    def main_kind(self) -> str:
        return self.kinds.most_common(1)[0][0] if self.kinds else ""


def _label_sets(a: AnswerProfile, b: AnswerProfile) -> tuple[set[str], set[str]] | None:
    """Both label sets when both groups are classifiers that use two labels or more."""
    if a.main_kind() != "label" or b.main_kind() != "label":
        return None
    la, lb = set(a.labels), set(b.labels)
    return (la, lb) if len(la) >= 2 and len(lb) >= 2 else None


def answered_differently(a: AnswerProfile, b: AnswerProfile, labels: bool = True) -> bool:
    """Evidence of two tasks: other shapes, disjoint label sets, or JSON keys neither of which
    the other's answers ever carry. `labels=False` where the groups are repeated requests:
    the label follows the content there, so two of them get different labels from one
    classifier."""
    if not a.n or not b.n:
        return False
    if a.kind_overlap(b) < MIN_KIND_OVERLAP:
        return True
    if (sets := _label_sets(a, b)) is not None:
        if not labels:
            return False
        return not sets[0] & sets[1]
    if a.main_kind() == b.main_kind() == "json" and a.key_sets and b.key_sets:
        ra, rb = a.required_keys(), b.required_keys()
        return not (ra <= b.all_keys() or rb <= a.all_keys())
    return False


def answered_alike(a: AnswerProfile, b: AnswerProfile) -> bool:
    """Evidence of one task: the same label set (near enough) or the same JSON keys."""
    if not a.n or not b.n or a.kind_overlap(b) < MIN_KIND_OVERLAP:
        return False
    if (sets := _label_sets(a, b)) is not None:
        la, lb = sets
        return len(la & lb) / len(la | lb) >= MIN_LABEL_JACCARD
    if a.main_kind() == b.main_kind() == "json" and a.key_sets and b.key_sets:
        return bool(a.required_keys()) and a.required_keys() == b.required_keys()
    return False
