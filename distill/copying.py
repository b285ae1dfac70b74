"""Copy slots on the training side: fit a task's proposer, measure it, delexicalize examples.

`fit_copy_slots` learns which answer fields copy from the request (and the values they
copied: the gazetteer); `coverage` measures the share of copied answer values the proposer
captures from the request alone; `delexicalize` rewrites examples the way the gateway will
rewrite requests (`gateway.copy_slots`), and `SlottedStudent` asks any student kind that way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from distill.curate import Example
from distill.student import Generation
from gateway.copy_slots import (
    FOREIGN,
    CopySlots,
    SlotLeak,
    Slots,
    answer_leaves,
    copied_values,
    number_text,
)

# A field counts as copied when its value stands verbatim in the request this often: a label
# that happens to appear in the text now and then (a ticket saying "billing") stays a label.
# A rule, not a fit: on the public SNIPS workload (`bench/distill_bench.py --workload snips`,
# 2026-11-30) it finds the annotated slot fields, whose values the proposer then covers 0.81.
COPY_SHARE = 0.9


def copy_fields(examples: list[Example]) -> tuple[list[str], list[str]]:
    """(fields the answers copy from the request, those of them copied as JSON numbers)."""
    seen: Counter[str] = Counter()
    copied: Counter[str] = Counter()
    numeric: Counter[str] = Counter()
    for ex in examples:
        paths = {p for p, _ in answer_leaves(ex.answer)}
        seen.update(paths)
        copied.update({p for p, _ in copied_values(ex.request(), ex.answer)})
        numeric.update({p for p, v in answer_leaves(ex.answer) if number_text(v) is not None})
    fields = sorted(p for p, n in copied.items() if n >= COPY_SHARE * seen[p])
    return fields, [p for p in fields if numeric[p] >= COPY_SHARE * seen[p]]


def fit_copy_slots(train: list[Example]) -> CopySlots | None:
    """The task's proposer, or None when its answers copy nothing (labels, free text)."""
    fields, numeric = copy_fields(train)
    if not fields:
        return None
    values: Counter[str] = Counter()
    for ex in train:
        for _, value in copied_values(ex.request(), ex.answer, fields):
            if not value.lstrip("-").replace(".", "").isdigit():  # numbers: the patterns' job
                values[value] += 1
    gazetteer = [v for v, _ in values.most_common(5000)]
    slots = CopySlots(gazetteer=gazetteer, numeric_fields=numeric)
    slots.coverage = {"fields": fields}
    return slots


def coverage(examples: list[Example], slots: CopySlots) -> dict[str, Any]:
    """Share of the copied answer values (in the copy fields) the proposer captures from the
    request alone; a value captured in part (a longer or shorter span) is a miss."""
    fields = slots.coverage.get("fields")
    total = captured = whole = 0
    misses: Counter[str] = Counter()
    for ex in examples:
        request = ex.request()
        found = set(Slots(slots, request).values)
        missed = 0
        for path, value in copied_values(request, ex.answer, fields):
            total += 1
            if value in found or FOREIGN.fullmatch(value):  # PII: pseudonymized already
                captured += 1
            else:
                missed += 1
                misses[path] += 1
        whole += missed == 0
    return {"copied": total, "captured": captured,
            "share": round(captured / total, 4) if total else None,
            # answers whose every copied value is captured: the most a student that cannot
            # copy by itself (a scratch model, its vocabulary the task's own) can get right
            "answers_whole": round(whole / len(examples), 4) if examples else None,
            "missed_by_field": dict(misses.most_common(5))}


def delexicalize(ex: Example, slots: CopySlots) -> Example:
    """The example as the student learns it: values in request and answer as placeholders."""
    s = Slots(slots, ex.request())
    if not s:
        return ex
    req = s.delex_request({"messages": ex.messages})
    return replace(ex, messages=req["messages"], answer=s.delex_message(ex.answer))


class SlottedStudent:
    """Any student kind asked through copy slots: requests delexicalized, answers restored.

    An answer whose placeholder cannot be restored is turned into an empty message, which
    the request's contract rejects (in the gateway it falls back to the teacher).
    """

    def __init__(self, inner: Any, slots: CopySlots) -> None:
        self.inner, self.slots = inner, slots
        self.leaks = 0

    def generate(self, requests: list[dict[str, Any]], max_new_tokens: int = 256
                 ) -> list[Generation]:
        per = [Slots(self.slots, r) for r in requests]
        gens = self.inner.generate([s.delex_request(r) for s, r in zip(per, requests,
                                                                       strict=True)],
                                   max_new_tokens=max_new_tokens)
        out = []
        for s, gen in zip(per, gens, strict=True):
            try:
                message = s.restore_message(gen.message)
            except SlotLeak:
                self.leaks += 1
                message = {"role": "assistant", "content": None}
            out.append(replace(gen, message=message))
        return out
