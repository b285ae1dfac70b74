"""Which leaves of a task's answers are copied and which are constants, decided from the data.

A field whose values the teacher copied from the request in most answers is a slot (filled
by pointing at the request); any other field is a constant chosen by classification, and a
constant must have been seen at least twice to be a class at all. An answer with a leaf that
is neither copied nor a repeated constant (free text, a paraphrase, a computed value) cannot
be expressed by the encoder student; `Analysis.verdict` says how many and why.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distill.encoder_answers import (
    Frame,
    answer_tree,
    frame_of,
    merge,
    occurrences,
    request_text,
    tree_leaves,
    value_text,
)
from distill.encoder_portable import PLACEHOLDER  # copy slots and scrubbed values

# A field is a slot when at least this share of its values were copied from the request: the
# majority behaviour of the teacher decides, no workload was fitted.
COPY_MAJORITY = 0.5
# Below this share of expressible training answers the kind is not worth training: the rest
# are certain misses, so held-out agreement could not reach a gate near it.
MIN_EXPRESSIBLE = 0.95
MIN_CONSTANT_COUNT = 2  # a constant seen once is no class a classifier can learn
# A value found in more than this share of the task's requests is part of the instruction
# (labels listed in the prompt, rule numbers), not of the instance: it is no copy from there.
INSTRUCTION_SHARE = 0.5


def copy_spans(text: str, instance_end: int, needle: str | None,
               common: Callable[[str, bool], bool]) -> list[tuple[int, int]]:
    """Where a value was copied from: its occurrences in the instance part of the request
    (the turns), else in the system part; none where the value is instruction there. A copy
    slot or a pseudonym (`<V1>`, `<PERSON_2>`) is never instruction: `<V1>` stands in most
    requests of a task, each time for another value of that request."""
    if needle is None:
        return []
    found = occurrences(text, needle)
    inside = [s for s in found if s[1] <= instance_end]
    if inside and (PLACEHOLDER.search(needle) or not common(needle, True)):
        return inside
    outside = [s for s in found if s[1] > instance_end]
    return outside if outside and not common(needle, False) else []


@dataclass
class Item:
    """One expressible training answer: its frame and the copied values by slot key."""

    frame: str
    values: dict[str, Any]  # slot key → the value as in the answer (typed)
    spans: dict[str, list[tuple[int, int]]]  # slot key → where in `text` it was copied from
    text: str  # the request text the values were copied from
    instance_end: int  # where the system part of `text` starts


@dataclass
class Analysis:
    frames: dict[str, Frame] = field(default_factory=dict)
    items: list[Item | None] = field(default_factory=list)  # None: not expressible
    problems: Counter[str] = field(default_factory=Counter)  # reason → answers
    copied_leaves: int = 0
    constant_leaves: int = 0

    @property
    def expressible(self) -> float:
        return sum(1 for i in self.items if i is not None) / len(self.items) if self.items else 0.0

    def verdict(self, min_share: float = MIN_EXPRESSIBLE) -> tuple[bool, str]:
        n = len(self.items)
        if not n:
            return False, "no training answers"
        share = self.expressible
        if share >= min_share:
            return True, (f"{share:.0%} of {n} answers are {len(self.frames)} frames of labels, "
                          f"enums and copied spans ({self.copied_leaves} copied values, "
                          f"{self.constant_leaves} constants)")
        reason, count = self.problems.most_common(1)[0]
        return False, f"{reason}: {count / n:.0%} of answers are not labels or copied spans"


def _constant_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def analyse(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> Analysis:
    """`pairs` of (request, teacher answer). Decides slots and constants, builds the frames."""
    out = Analysis()
    parts = [request_text(req) for req, _ in pairs]
    trees = [answer_tree(ans, req) for req, ans in pairs]
    copied_at: Counter[str] = Counter()
    seen_at: Counter[str] = Counter()
    constants: dict[str, Counter[str]] = defaultdict(Counter)
    per_example: list[list[tuple[str, Any, list[tuple[int, int]]]]] = []
    shares: dict[tuple[str, bool], bool] = {}

    def common(needle: str, instance: bool) -> bool:
        """Found in more than INSTRUCTION_SHARE of the requests (their turns, or whole)."""
        if (needle, instance) not in shares:
            found = sum(1 for t, end in parts
                        if needle in (t[:end] if instance else t)
                        and occurrences(t[:end] if instance else t, needle))
            shares[needle, instance] = len(parts) > 2 and found > INSTRUCTION_SHARE * len(parts)
        return shares[needle, instance]

    for (text, end), tree in zip(parts, trees, strict=True):
        rows = []
        for key, value in tree_leaves(tree) if tree is not None else []:
            spans = copy_spans(text, end, value_text(value), common)
            rows.append((key, value, spans))
            seen_at[key] += 1
            copied_at[key] += bool(spans)
            constants[key][_constant_key(value)] += 1
        per_example.append(rows)

    for (text, end), tree, rows in zip(parts, trees, per_example, strict=True):
        if tree is None:
            out.items.append(None)
            out.problems["tool arguments that are not JSON"] += 1
            continue
        if tree["content"] is None and not tree["calls"]:
            out.items.append(None)
            out.problems["empty answers"] += 1
            continue
        copied: dict[str, Any] = {}
        where: dict[str, list[tuple[int, int]]] = {}
        problem = None
        for key, value, spans in rows:
            copyable = bool(spans)
            repeated = constants[key][_constant_key(value)] >= MIN_CONSTANT_COUNT
            slot_field = copied_at[key] >= COPY_MAJORITY * seen_at[key]
            if copyable and (slot_field or not repeated):
                copied[key], where[key] = value, spans
            elif not repeated:
                free = key == "content" and not tree["json"]
                problem = "free text" if free else f"values neither copied nor repeated ({key})"
                break
        if problem:
            out.items.append(None)
            out.problems[problem] += 1
            continue
        ident, full, slot_types = frame_of(tree, copied)
        frame = out.frames.get(ident)
        if frame is None:
            frame = out.frames[ident] = Frame(tree=full)
        else:
            frame.tree = merge(frame.tree, full)
        frame.slots.update(slot_types)
        frame.count += 1
        out.copied_leaves += len(copied)
        out.constant_leaves += len(rows) - len(copied)
        out.items.append(Item(ident, copied, where, text, end))
    return out
